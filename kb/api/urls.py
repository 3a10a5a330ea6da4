"""API routes, mounted at /api/ (namespace `api`)."""

from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from kb.api import coding_rounds, exchange, reports, studies, views

app_name = "api"

router = DefaultRouter()
router.include_format_suffixes = False
router.register("researchers", views.ResearcherViewSet, basename="researcher")
router.register("surveys", views.SurveyViewSet, basename="survey")
router.register("questions", views.QuestionViewSet, basename="question")
router.register("invitations", views.InvitationViewSet, basename="surveyinvitation")
router.register("interviews", views.InterviewViewSet, basename="interview")
router.register("answers", views.AnswerViewSet, basename="answer")
router.register("themes", views.ThemeViewSet, basename="theme")
router.register("highlights", views.HighlightViewSet, basename="highlight")
router.register("models", views.SubjectModelViewSet, basename="subjectmodel")
router.register("findings", views.FindingViewSet, basename="finding")
router.register("insights", views.InsightViewSet, basename="insight")
router.register("changes", views.ChangeViewSet, basename="architecturechange")
router.register("outcomes", views.OutcomeViewSet, basename="outcome")
router.register("runs", views.RunViewSet, basename="analysisrun")
router.register("studies", studies.StudyViewSet, basename="study")
router.register("events", views.EventViewSet, basename="event")
router.register("coding-rounds", coding_rounds.CodingRoundViewSet, basename="codinground")


@csrf_exempt
def api_not_found(request) -> JsonResponse:
    """Anything else under /api/ (an id that is not a number, say) is a JSON 404, as
    documented, rather than the site's HTML page; no body is read, so no CSRF check."""
    return JsonResponse({"detail": "Not found."}, status=404)


urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its script from ?script= instead of inline, as the CSP requires.
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api:schema", template_name="kb/api_docs.html"
        ),
        name="docs",
    ),
    path(
        "statistics/theme-prevalence/",
        reports.ThemePrevalenceView.as_view(),
        name="theme-prevalence",
    ),
    path("statistics/scoreboard/", reports.ScoreboardView.as_view(), name="scoreboard"),
    path("statistics/agreement/", reports.AgreementView.as_view(), name="agreement"),
    path("export/", reports.ExportView.as_view(), name="export"),
    path("export/outcomes.csv", reports.OutcomesCSVView.as_view(), name="export-outcomes"),
    path(
        "export/theme-by-researcher.csv",
        reports.ThemeByResearcherCSVView.as_view(),
        name="export-theme-by-researcher",
    ),
    path("export/codebook.qdc", exchange.CodebookQDCView.as_view(), name="export-codebook-qdc"),
    path("export/codebook.csv", exchange.CodebookCSVView.as_view(), name="export-codebook-csv"),
    path("export/project.qdpx", exchange.ProjectQDPXView.as_view(), name="export-project-qdpx"),
    path("import/codebook/", exchange.CodebookImportView.as_view(), name="import-codebook"),
    path("import/project/", exchange.ProjectImportView.as_view(), name="import-project"),
    path("", include(router.urls)),
    re_path(r"^.*$", api_not_found),
]
