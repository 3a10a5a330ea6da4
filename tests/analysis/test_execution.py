"""Jobs executed in this process (as a worker would) write results and write-backs once."""

import pytest
from django.core.files.storage import default_storage

from analysis import services
from kb.models import Event, Finding, Outcome
from tests.analysis import engine_helpers  # noqa: F401  (one torch thread)
from tests.analysis.jobs import QUICK, run_all
from tests.factories import BuiltinModelFactory, ChangeFactory, FindingFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def test_experiment_writes_one_outcome_and_delivering_again_does_nothing(researcher_user):
    change = ChangeFactory()
    run = services.experiment_request(
        actor=researcher_user, change=change, config={**QUICK, "seeds": 3}, dispatch=False
    )
    outcomes = run_all(run)
    assert outcomes == ["done"] * 8 + ["finished"]
    assert run.status == "succeeded"
    aggregate = run.result["aggregate"]
    assert [row["seed"] for row in aggregate["per_seed"]] == [0, 1, 2]
    assert set(run.result["figures"]) == {"training_curves", "metric_by_arm"}
    assert run.result["plan"]["control"]["parameters"] == {"layer": "fc1", "units": 5}
    # a second delivery of every message changes nothing
    assert run_all(run) == ["gone"] * 9
    outcome = Outcome.objects.get(change=change)
    assert outcome.analysis_run == run
    assert outcome.verdict == aggregate["verdict"]
    assert outcome.baseline_values == aggregate["arms"]["baseline"]["values"]
    assert Event.objects.filter(action="outcome_recorded").count() == 1


def test_profiling_proposes_a_finding_with_its_location(researcher_user):
    model = BuiltinModelFactory()
    run = services.profile_request(
        actor=researcher_user, subject_model=model,
        config={**QUICK, "concept": "curvature", "top_k": 4}, dispatch=False,
    )  # fmt: skip
    assert run_all(run) == ["finished"]
    assert run.status == "succeeded", run.error
    best = run.result["localisation"][0]
    finding = Finding.objects.get(subject_model=model)
    assert finding.layer_name == best["layer"]
    assert finding.concept == "curvature"
    assert finding.status == "hypothesis"
    assert list(finding.evidence_runs.all()) == [run]
    assert default_storage.open(run.result["figures"]["selectivity"]).read(4) == b"\x89PNG"
    assert run.config["dataset"]["name"] == "shapes"
    assert run.environment["dataset_fingerprint"] == run.result["dataset_fingerprint"]


def test_ablation_attaches_itself_as_evidence(researcher_user):
    model = BuiltinModelFactory()
    finding = FindingFactory(subject_model=model, layer_name="conv2", unit_indices=[0, 3])
    run = services.ablation_request(
        actor=researcher_user, finding=finding, config={**QUICK, "random_sets": 4}, dispatch=False
    )
    assert run_all(run) == ["finished"]
    assert run.status == "succeeded", run.error
    ablation = run.result["ablation"]
    assert ablation["units"] == [0, 3]
    assert len(ablation["random_drops"]) == 4
    assert list(finding.evidence_runs.all()) == [run]


def test_profiling_uses_stored_safetensors_weights(researcher_user, tmp_path):
    import pickle

    from django.core.exceptions import ValidationError
    from django.core.files import File

    from analysis.engine.builder import build_model, save_weights
    from kb.services.subjects import subject_model_create
    from tests.factories import SHAPES_SPEC

    weights = tmp_path / "shapes.safetensors"
    save_weights(build_model(SHAPES_SPEC), weights)
    with weights.open("rb") as handle:
        model = subject_model_create(
            actor=researcher_user, name="Stored", kind="builtin",
            architecture_spec=SHAPES_SPEC, weights=File(handle, name="shapes.safetensors"),
        )  # fmt: skip
    assert len(model.weights_sha256) == 64
    run = services.profile_request(
        actor=researcher_user, subject_model=model, config=QUICK, dispatch=False
    )
    assert run_all(run) == ["finished"]
    assert run.result["model_metrics"]["source"] == "stored weights"
    # and a pickle dressed up as weights is refused before anything is stored
    pickled = tmp_path / "evil.safetensors"
    pickled.write_bytes(pickle.dumps({"conv1.weight": [1.0]}))
    with pickled.open("rb") as handle, pytest.raises(ValidationError) as excinfo:
        subject_model_create(
            actor=researcher_user, name="Evil", kind="builtin", architecture_spec=SHAPES_SPEC,
            weights=File(handle, name="evil.safetensors"),
        )  # fmt: skip
    assert "Not a safetensors file" in str(excinfo.value)
