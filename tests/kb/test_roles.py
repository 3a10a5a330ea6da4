"""The two groups and what their permissions allow."""

import pytest

pytestmark = pytest.mark.django_db

PERSONAL_OR_TRANSCRIPT = [
    "kb.view_researcher",
    "kb.view_interview",
    "kb.view_answer",
    "kb.view_highlight",
    "kb.view_insighthighlight",
]


def test_viewer_reads_results_but_not_interviews(viewer_user):
    for perm in [
        "kb.view_insight",
        "kb.view_finding",
        "kb.view_outcome",
        "kb.view_architecturechange",
        "analysis.view_analysisrun",
        "kb.view_theme",
    ]:
        assert viewer_user.has_perm(perm), perm
    for perm in PERSONAL_OR_TRANSCRIPT + ["kb.add_insight", "kb.change_finding"]:
        assert not viewer_user.has_perm(perm), perm


def test_researcher_writes_everything_but_the_event_log(researcher_user):
    for perm in PERSONAL_OR_TRANSCRIPT + [
        "kb.add_insight",
        "kb.change_finding",
        "analysis.add_analysisrun",
        "kb.delete_theme",
    ]:
        assert researcher_user.has_perm(perm), perm
    assert researcher_user.has_perm("kb.view_event")
    assert not researcher_user.has_perm("kb.change_event")


def test_outsider_has_no_permission(outsider_user):
    assert outsider_user.get_all_permissions() == set()


# The records that have a delete page on the site.
DELETABLE = [
    "researcher", "survey", "question", "interview", "highlight", "theme", "subjectmodel",
    "finding", "insight", "architecturechange",
]  # fmt: skip


def test_researchers_and_no_one_else_delete_records(researcher_user, viewer_user):
    for model in DELETABLE:
        assert researcher_user.has_perm(f"kb.delete_{model}"), model
        assert not viewer_user.has_perm(f"kb.delete_{model}"), model
    assert not researcher_user.has_perm("kb.delete_event")
