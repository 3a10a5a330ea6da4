"""The demo's transformer experiment (kb.demo: insert a second attention layer into the
one-layer model) on a real worker process against this machine's Redis, with few steps: one
outcome is written, and the mechanism check on the added layer's heads with it."""

import pytest

from analysis.models import AnalysisRun
from analysis.services import experiment_request
from kb.demo import induction_experiment_config, seed_induction_story
from kb.models import ArchitectureChange, Outcome
from tests.analysis.workers import celery_worker, require_redis, unique_queue, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RUN_TIMEOUT = 120
# The demo's task and control; 20 steps and 16 probe sequences instead of 2,000 and 256.
SMALL = {**induction_experiment_config(), "train": {"steps": 20}, "probe_size": 16}


@pytest.fixture
def worker_settings(settings, tmp_path):
    require_redis()
    settings.ANALYSIS_QUEUE = unique_queue()
    # Long enough that a busy host never lets a live job's lease run out.
    settings.ANALYSIS_JOB_LEASE_SECONDS = 60
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings


def _finished(run: AnalysisRun) -> AnalysisRun | None:
    run.refresh_from_db()
    return run if run.is_finished else None


def test_a_worker_runs_the_demo_experiment_and_writes_the_outcome_and_the_mechanism_check(
    worker_settings,
    tmp_path,
    researcher_user,
):
    seed_induction_story(researcher_user)
    change = ArchitectureChange.objects.get(operation="insert_block")
    log = tmp_path / "worker.log"
    with celery_worker(
        queue=worker_settings.ANALYSIS_QUEUE,
        log_path=log,
        media_root=worker_settings.MEDIA_ROOT,
        concurrency=2,
    ):
        run = experiment_request(actor=researcher_user, change=change, config=SMALL)
        wait_for(
            lambda: _finished(run), timeout=RUN_TIMEOUT, describe=lambda: log.read_text()[-3000:]
        )
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    assert sorted(run.jobs.values_list("attempts", flat=True)) == [1] * 9
    aggregate = run.result["aggregate"]
    outcome = Outcome.objects.get(change=change)
    assert (outcome.analysis_run, outcome.metric) == (run, "test_loss")
    assert len(outcome.baseline_values) == len(outcome.variant_values) == 3
    assert len(outcome.control_values) == 3
    assert outcome.verdict == aggregate["verdict"]
    # The mechanism check looked at the inserted layer's two heads, seed by seed, and the
    # outcome's notes carry its interpretation.
    mechanism = aggregate["mechanism"]
    assert (mechanism["layer"], mechanism["added_heads"]) == ("blocks.1.attn", [0, 1])
    assert [row["seed"] for row in mechanism["per_seed"]] == [0, 1, 2]
    assert mechanism["errors"] == []
    assert f"- Mechanism check: {mechanism['interpretation']}." in outcome.notes
    assert run.config["plan"]["control"]["policy"] == "any_operation"
    change.refresh_from_db()
    assert change.status == ArchitectureChange.Status.EVALUATED
