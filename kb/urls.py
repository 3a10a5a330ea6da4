"""The root URLconf."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from kb import views

DETAIL_PAGES = [
    ("researchers", "kb.Researcher", "researcher-detail"),
    ("surveys", "kb.Survey", "survey-detail"),
    ("interviews", "kb.Interview", "interview-detail"),
    ("themes", "kb.Theme", "theme-detail"),
    ("models", "kb.SubjectModel", "model-detail"),
    ("findings", "kb.Finding", "finding-detail"),
    ("insights", "kb.Insight", "insight-detail"),
    ("changes", "kb.ArchitectureChange", "change-detail"),
    ("runs", "analysis.AnalysisRun", "run-detail"),
]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("kb.api.urls")),
    *[
        path(f"{prefix}/<int:pk>/", views.record_detail, {"model_label": label}, name=name)
        for prefix, label, name in DETAIL_PAGES
    ],
]

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
