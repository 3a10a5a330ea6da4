"""How a run fails says who is at fault: weights that do not fit the model are the request's
fault, a soft time limit is recorded as one, and a run from before configs were frozen is
refused rather than run on live rows."""

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import ValidationError
from django.core.files import File

from analysis import execution, services
from analysis.engine.builder import build_model, save_weights
from analysis.execution import execute_job
from analysis.models import AnalysisJob, AnalysisRun
from analysis.tasks import run_job
from kb.services.subjects import subject_model_create
from tests.analysis import engine_helpers  # noqa: F401  (one torch thread)
from tests.analysis.engine_helpers import TINY_CNN
from tests.analysis.jobs import QUICK
from tests.factories import SHAPES_SPEC, BuiltinModelFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def test_weights_that_do_not_fit_the_spec_fail_as_a_bad_request(researcher_user, tmp_path):
    weights = tmp_path / "other.safetensors"
    save_weights(build_model(TINY_CNN), weights)  # another architecture's tensors
    with weights.open("rb") as handle:
        model = subject_model_create(
            actor=researcher_user, name="Mismatched", kind="builtin",
            architecture_spec=SHAPES_SPEC, weights=File(handle, name="other.safetensors"),
        )  # fmt: skip
    run = services.profile_request(
        actor=researcher_user, subject_model=model, config=QUICK, dispatch=False
    )
    assert execute_job(run_id=run.pk, key="main") == "failed"
    run.refresh_from_db()
    assert run.failure == AnalysisRun.Failure.BAD_REQUEST
    assert run.error.startswith("main: WeightsError: ")


def test_a_soft_time_limit_is_recorded_as_one_not_as_a_bug(researcher_user, monkeypatch):
    run = services.profile_request(
        actor=researcher_user, subject_model=BuiltinModelFactory(), config=QUICK, dispatch=False
    )

    def past_the_limit(job):
        # What Celery raises inside a job that outlives ANALYSIS_SOFT_TIME_LIMIT; waiting for
        # the real signal would take the limit's minimum of 10 s.
        raise SoftTimeLimitExceeded()

    monkeypatch.setitem(execution.JOB_RUNNERS, AnalysisRun.Kind.PROFILE, past_the_limit)
    assert run_job.apply(args=(run.pk, "main")).get() == "time limit"
    run.refresh_from_db()
    assert (run.status, run.failure) == ("failed", AnalysisRun.Failure.TIME_LIMIT)
    assert run.error == "main: the job ran past its time limit"


def test_a_run_from_before_configs_were_frozen_is_refused_not_run(researcher_user):
    model = BuiltinModelFactory()
    run = AnalysisRun.objects.create(
        kind=AnalysisRun.Kind.PROFILE, subject_model=model, config={**QUICK, "seed": 0}
    )
    AnalysisJob.objects.create(run=run, key="main")
    assert execute_job(run_id=run.pk, key="main") == "failed"
    run.refresh_from_db()
    assert run.failure == AnalysisRun.Failure.BAD_REQUEST
    assert "requested before runs froze what they measure" in run.error
    with pytest.raises(ValidationError) as excinfo:
        services.run_retry(actor=researcher_user, run=run)
    assert list(excinfo.value.message_dict) == ["status"]


def test_renaming_a_model_does_not_hide_a_reproduction(researcher_user):
    model = BuiltinModelFactory()
    first = services.profile_request(
        actor=researcher_user, subject_model=model, config=QUICK, dispatch=False
    )
    AnalysisRun.objects.filter(pk=first.pk).update(status=AnalysisRun.Status.SUCCEEDED)
    model.name = "Renamed"
    model.save()
    second = services.profile_request(
        actor=researcher_user, subject_model=model, config=QUICK, dispatch=False
    )
    assert second.config["model"]["name"] == "Renamed"
    assert second.reproduces_id == first.pk
