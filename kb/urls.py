"""The root URLconf: the site's pages, the admin and the API."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from kb.views import (
    agreement,
    codebook,
    coding_rounds,
    exchange,
    files,
    insights,
    pages,
    people,
    runs,
    studies,
    subjects,
)


def crud(prefix: str, name: str, module, view_prefix: str | None = None) -> list:
    """list, create, detail, update and delete routes named `<name>-list` ... `<name>-delete`,
    served by the module's `<view_prefix>_list` ... `<view_prefix>_delete`."""
    view_prefix = view_prefix or name
    return [
        path(f"{prefix}/", getattr(module, f"{view_prefix}_list"), name=f"{name}-list"),
        path(f"{prefix}/new/", getattr(module, f"{view_prefix}_create"), name=f"{name}-create"),
        path(
            f"{prefix}/<int:pk>/", getattr(module, f"{view_prefix}_detail"), name=f"{name}-detail"
        ),
        path(
            f"{prefix}/<int:pk>/edit/",
            getattr(module, f"{view_prefix}_update"),
            name=f"{name}-update",
        ),
        path(
            f"{prefix}/<int:pk>/delete/",
            getattr(module, f"{view_prefix}_delete"),
            name=f"{name}-delete",
        ),
    ]


urlpatterns = [
    path("", pages.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("kb.api.urls")),
    path("search/", pages.search, name="search"),
    path("scoreboard/", pages.scoreboard, name="scoreboard"),
    path("scoreboard/outcomes.csv", pages.outcomes_csv, name="outcomes-csv"),
    path("preview/", pages.markdown_preview, name="markdown-preview"),
    *crud("researchers", "researcher", people),
    path(
        "researchers/<int:pk>/anonymise/",
        people.researcher_anonymise,
        name="researcher-anonymise",
    ),
    *crud("surveys", "survey", people),
    path("surveys/<int:pk>/questions/new/", people.question_create, name="question-create"),
    path("questions/<int:pk>/edit/", people.question_update, name="question-update"),
    path("questions/<int:pk>/delete/", people.question_delete, name="question-delete"),
    path("questions/<int:pk>/move/", people.question_move, name="question-move"),
    path("surveys/<int:pk>/invite/", people.invitation_create, name="invitation-create"),
    path("invitations/<int:pk>/withdraw/", people.invitation_withdraw, name="invitation-withdraw"),
    path("s/<str:token>/", people.survey_respond, name="survey-respond"),
    *crud("interviews", "interview", people),
    path("interviews/<int:pk>/highlights/", people.highlight_create, name="highlight-create"),
    path(
        "interviews/<int:pk>/themes/", people.interview_theme_create, name="interview-theme-create"
    ),
    path("highlights/<int:pk>/edit/", people.highlight_update, name="highlight-update"),
    path("highlights/<int:pk>/delete/", people.highlight_delete, name="highlight-delete"),
    *crud("themes", "theme", codebook),
    path("agreement/", agreement.agreement_page, name="agreement"),
    path("coding-rounds/", coding_rounds.coding_round_list, name="coding-round-list"),
    path("coding-rounds/new/", coding_rounds.coding_round_create, name="coding-round-create"),
    path("coding-rounds/<int:pk>/", coding_rounds.coding_round_detail, name="coding-round-detail"),
    path("coding-rounds/<int:pk>/done/", coding_rounds.coding_round_done, name="coding-round-done"),
    path(
        "coding-rounds/<int:pk>/close/", coding_rounds.coding_round_close, name="coding-round-close"
    ),
    path(
        "coding-rounds/<int:pk>/consensus/",
        coding_rounds.coding_round_consensus,
        name="coding-round-consensus",
    ),
    path("themes/by-researcher.csv", codebook.theme_researcher_csv, name="theme-researcher-csv"),
    path("exchange/", exchange.exchange_page, name="exchange"),
    *crud("models", "model", subjects, "subject_model"),
    path("models/<int:pk>/profile/", subjects.subject_model_profile, name="model-profile"),
    path("models/<int:pk>/weights/", files.subject_model_weights, name="model-weights"),
    *crud("findings", "finding", subjects),
    path("findings/<int:pk>/ablate/", subjects.finding_ablate, name="finding-ablate"),
    *crud("insights", "insight", insights),
    path(
        "insights/<int:pk>/findings/<int:link_pk>/remove/",
        insights.insight_unlink_finding,
        name="insight-unlink-finding",
    ),
    path(
        "insights/<int:pk>/quotes/<int:link_pk>/remove/",
        insights.insight_unlink_quote,
        name="insight-unlink-quote",
    ),
    *crud("changes", "change", insights),
    path("changes/<int:pk>/copy/", insights.change_copy, name="change-copy"),
    path("changes/<int:pk>/experiment/", insights.change_experiment, name="change-experiment"),
    path("changes/<int:pk>/outcomes/new/", insights.outcome_create, name="outcome-create"),
    path("outcomes/<int:pk>/edit/", insights.outcome_update, name="outcome-update"),
    path("outcomes/<int:pk>/delete/", insights.outcome_delete, name="outcome-delete"),
    path("runs/", runs.run_list, name="run-list"),
    path("runs/<int:pk>/", runs.run_detail, name="run-detail"),
    path("runs/<int:pk>/live/", runs.run_live, name="run-live"),
    path("runs/<int:pk>/cancel/", runs.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/retry/", runs.run_retry, name="run-retry"),
    path("studies/", studies.study_list, name="study-list"),
    path("studies/new/", studies.study_create, name="study-create"),
    path("studies/<int:pk>/", studies.study_detail, name="study-detail"),
    path("studies/<int:pk>/live/", studies.study_live, name="study-live"),
    path("studies/<int:pk>/cancel/", studies.study_cancel, name="study-cancel"),
    path("studies/<int:pk>/resume/", studies.study_resume, name="study-resume"),
    # Stored files are private: no route serves MEDIA_ROOT, not even in development; each
    # file is streamed by kb/views/files.py to users who may see its run or model.
    path("runs/<int:pk>/figures/<slug:name>/", files.run_figure, name="run-figure"),
]
