"""The two roles, as Django groups with model permissions.

viewer: reads insights, findings, models, changes, outcomes, runs, themes and the event log;
never interviews, answers, highlights or researchers (personal data and transcripts).
researcher: creates, edits and deletes everything in the knowledge base and runs analyses.
Staff use the admin with their own permissions.
"""

from django.contrib.auth.models import Group, Permission

VIEWER = "viewer"
RESEARCHER = "researcher"

KB_MODELS = [
    "researcher",
    "survey",
    "question",
    "interview",
    "answer",
    "theme",
    "highlight",
    "subjectmodel",
    "finding",
    "insight",
    "insightfinding",
    "insighthighlight",
    "architecturechange",
    "outcome",
    "surveyinvitation",
    "codinground",
    "codingroundcoder",
]
VIEWER_MODELS = {
    "kb": [
        "survey",
        "question",
        "theme",
        "subjectmodel",
        "finding",
        "insight",
        "insightfinding",
        "architecturechange",
        "outcome",
        "event",
    ],
    "analysis": ["analysisrun"],
}
RESEARCHER_MODELS = {"kb": KB_MODELS, "analysis": ["analysisrun"]}


def _permissions(models_by_app: dict[str, list[str]], actions: list[str]) -> list[Permission]:
    codenames = {
        (app, f"{action}_{model}")
        for app, models in models_by_app.items()
        for model in models
        for action in actions
    }
    found = Permission.objects.filter(
        content_type__app_label__in=models_by_app.keys()
    ).select_related("content_type")
    return [p for p in found if (p.content_type.app_label, p.codename) in codenames]


def roles_ensure() -> None:
    """Create or refresh both groups; safe to call on every migrate."""
    viewer, _ = Group.objects.get_or_create(name=VIEWER)
    viewer.permissions.set(_permissions(VIEWER_MODELS, ["view"]))
    researcher, _ = Group.objects.get_or_create(name=RESEARCHER)
    researcher.permissions.set(
        _permissions(RESEARCHER_MODELS, ["view", "add", "change", "delete"])
        + _permissions({"kb": ["event"]}, ["view"])
    )
