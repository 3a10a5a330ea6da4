"""The root URLconf: the site's pages, the admin and the API."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from kb.views import codebook, insights, pages, people, runs, subjects


def crud(prefix: str, name: str, module, view_prefix: str | None = None) -> list:
    """list, create, detail and update routes named `<name>-list` ... `<name>-update`."""
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
    path("surveys/<int:pk>/invite/", people.invitation_create, name="invitation-create"),
    path("s/<str:token>/", people.survey_respond, name="survey-respond"),
    *crud("interviews", "interview", people),
    path("interviews/<int:pk>/highlights/", people.highlight_create, name="highlight-create"),
    *crud("themes", "theme", codebook),
    path("themes/by-researcher.csv", codebook.theme_researcher_csv, name="theme-researcher-csv"),
    *crud("models", "model", subjects, "subject_model"),
    path("models/<int:pk>/profile/", subjects.subject_model_profile, name="model-profile"),
    *crud("findings", "finding", subjects),
    path("findings/<int:pk>/ablate/", subjects.finding_ablate, name="finding-ablate"),
    *crud("insights", "insight", insights),
    *crud("changes", "change", insights),
    path("changes/<int:pk>/experiment/", insights.change_experiment, name="change-experiment"),
    path("changes/<int:pk>/outcomes/new/", insights.outcome_create, name="outcome-create"),
    path("runs/", runs.run_list, name="run-list"),
    path("runs/<int:pk>/", runs.run_detail, name="run-detail"),
    path("runs/<int:pk>/live/", runs.run_live, name="run-live"),
    path("runs/<int:pk>/cancel/", runs.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/retry/", runs.run_retry, name="run-retry"),
    path("runs/<int:pk>/figures/<slug:name>/", runs.run_figure, name="run-figure"),
]

if settings.DEBUG:
    # Only uploaded model weights live here in development; analysis figures are private and
    # are served by run-figure with a permission check.
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
