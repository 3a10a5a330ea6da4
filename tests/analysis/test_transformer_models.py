"""Transformers as subject models through the product: registered by form and API (weights a
HookedTransformer state dict saved as safetensors), findings located at heads and neurons,
profiling that proposes a head's role, ablation of a finding's heads, and the run page's table
of head scores."""

import json

import pytest
import torch
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient
from safetensors.torch import save

from analysis import services
from analysis.engine.transformer import hooked_transformer_state_dict
from analysis.models import AnalysisRun
from kb.models import Finding, SubjectModel
from kb.services.subjects import finding_create, subject_model_create
from tests.analysis.jobs import run_all
from tests.analysis.transformer_helpers import (
    INDUCTION_HEAD,
    PREVIOUS_TOKEN_HEAD,
    TINY_TRANSFORMER,
    planted_induction_model,
    planted_spec,
)
from tests.helpers import nothing_written

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

BAD_SPEC = {**TINY_TRANSFORMER, "blocks": [{"n_heads": 2}, {"n_heads": 0}]}
BAD_HEADS = "must be a whole number from 1 to 64, got 0."
# Few probe sequences: the planted heads are exact, so a small probe set scores them.
PROBE = {"dataset": {"name": "induction", "length": 16, "segment": 4}, "probe_size": 16}


@pytest.fixture
def client_r(client, researcher_user):
    """The test client, signed in as the researcher."""
    client.force_login(researcher_user)
    return client


@pytest.fixture
def api_r(researcher_user) -> APIClient:
    """An API client signed in as the researcher."""
    client = APIClient()
    client.force_authenticate(researcher_user)
    return client


def hooked_weights() -> bytes:
    """The planted model's state dict as TransformerLens saves it: its keys, plus the causal
    mask and masking value a HookedTransformer keeps as buffers."""
    state = hooked_transformer_state_dict(planted_induction_model())
    n_ctx = planted_spec()["n_ctx"]
    for block in range(len(planted_spec()["blocks"])):
        state[f"blocks.{block}.attn.mask"] = torch.ones(n_ctx, n_ctx).tril().bool()
        state[f"blocks.{block}.attn.IGNORE"] = torch.tensor(-1e5)
    return save(state)


def register_planted(actor, name: str = "Planted induction") -> SubjectModel:
    upload = SimpleUploadedFile("planted.safetensors", hooked_weights())
    return subject_model_create(
        actor=actor, name=name, kind="builtin", architecture_spec=planted_spec(), weights=upload
    )


# --- registration -----------------------------------------------------------------------


def test_a_transformer_registers_through_the_form_with_heads_and_neurons_as_units(client_r):
    response = client_r.post(
        reverse("model-create"),
        {"name": "Tiny", "kind": "builtin", "architecture_spec": json.dumps(TINY_TRANSFORMER)},
    )
    assert response.status_code == 302
    model = SubjectModel.objects.get(name="Tiny")
    assert model.architecture_spec == TINY_TRANSFORMER
    assert model.known_layer_widths() == {
        "blocks.0.attn": 2, "blocks.1.attn": 2, "blocks.1.mlp": 24,
    }  # fmt: skip
    page = client_r.get(model.get_absolute_url()).content.decode()
    assert "<code>blocks.1.mlp</code></th><td>24</td>" in page
    # the page's profiling form takes a sequence task for a transformer
    assert f'href="{reverse("model-profile", args=[model.pk])}">Profile its heads' in page


def test_a_bad_transformer_spec_is_shown_on_the_spec_field_and_nothing_is_saved(client_r):
    with nothing_written():
        response = client_r.post(
            reverse("model-create"),
            {"name": "Bad", "kind": "builtin", "architecture_spec": json.dumps(BAD_SPEC)},
        )
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors == {"architecture_spec": [f"blocks.1.n_heads: {BAD_HEADS}"]}


def test_the_admin_registers_a_transformer_and_shows_a_bad_specs_problem_on_the_field(
    client, staff_user
):
    client.force_login(staff_user)
    url = reverse("admin:kb_subjectmodel_add")
    form = {"name": "Tiny", "kind": "builtin", "family": "", "task": "", "dataset": "",
            "source": ""}  # fmt: skip
    with nothing_written():
        response = client.post(url, {**form, "architecture_spec": json.dumps(BAD_SPEC)})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors == {"architecture_spec": [f"blocks.1.n_heads: {BAD_HEADS}"]}
    response = client.post(url, {**form, "architecture_spec": json.dumps(TINY_TRANSFORMER)})
    assert response.status_code == 302
    assert SubjectModel.objects.get(name="Tiny").known_layer_widths()["blocks.1.mlp"] == 24


def test_the_api_registers_a_hooked_transformer_state_dict_as_weights(api_r):
    body = {
        "name": "Planted", "kind": "builtin", "architecture_spec": json.dumps(planted_spec()),
        "weights": SimpleUploadedFile("planted.safetensors", hooked_weights()),
    }  # fmt: skip
    response = api_r.post("/api/models/", body, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["architecture_spec"] == planted_spec()
    assert len(response.json()["weights_sha256"]) == 64


def test_the_api_refuses_a_bad_transformer_spec_keyed_by_its_field(api_r):
    body = {"name": "Bad", "kind": "builtin", "architecture_spec": BAD_SPEC}
    with nothing_written():
        response = api_r.post("/api/models/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"architecture_spec.blocks.1.n_heads": [BAD_HEADS]}


def test_a_findings_location_on_a_transformer_is_checked_against_heads_and_neurons(
    researcher_user,
):
    model = subject_model_create(
        actor=researcher_user, name="Tiny", kind="builtin", architecture_spec=TINY_TRANSFORMER
    )
    no_mlp = "The model has no layer 'blocks.0.mlp' with units."
    two_heads = "Layer blocks.1.attn has 2 units; out of range: 2."
    refused = [
        ("blocks.0.mlp", [0], {"layer_name": [no_mlp]}),
        ("blocks.1.attn", [2], {"unit_indices": [two_heads]}),
    ]
    for layer, units, errors in refused:
        with nothing_written(), pytest.raises(ValidationError) as excinfo:
            finding_create(
                actor=researcher_user, subject_model=model, title="x", layer_name=layer,
                unit_indices=units,
            )  # fmt: skip
        assert excinfo.value.message_dict == errors
    finding = finding_create(
        actor=researcher_user, subject_model=model, title="MLP neurons",
        layer_name="blocks.1.mlp", unit_indices=[0, 23],
    )  # fmt: skip
    assert finding.unit_indices == [0, 23]


# --- profiling and ablation runs ------------------------------------------------------------


@pytest.fixture
def profiled(researcher_user):
    """A profiling run of the planted model, executed in this process."""
    model = register_planted(researcher_user)
    run = services.profile_request(
        actor=researcher_user, subject_model=model, config=PROBE, dispatch=False
    )
    assert run_all(run) == ["finished"]
    assert run.status == "succeeded", run.error
    return run


def test_profiling_a_transformers_stored_weights_proposes_its_heads_roles(profiled):
    run = profiled
    assert run.config["dataset"] == {"name": "induction", "length": 16, "segment": 4,
                                     "eval_seed": 10_000}  # fmt: skip
    assert run.config["profiled"] == {"blocks.0.attn": 2, "blocks.1.attn": 2}
    assert run.config["probe_size"] == 16
    result = run.result
    assert result["model_metrics"]["source"] == "stored weights"
    assert [(row["layer"], row["head"]) for row in result["head_scores"]] == [
        ("blocks.0.attn", 0), ("blocks.0.attn", 1), ("blocks.1.attn", 0), ("blocks.1.attn", 1),
    ]  # fmt: skip
    roles = {proposal["role"]: proposal for proposal in result["proposed_findings"]}
    assert (roles["previous_token"]["block"], roles["previous_token"]["head"]) == (
        PREVIOUS_TOKEN_HEAD
    )
    assert (roles["induction"]["block"], roles["induction"]["head"]) == INDUCTION_HEAD
    induction = Finding.objects.get(subject_model=run.subject_model, concept="induction")
    score = roles["induction"]["score"]
    assert induction.title == (
        f"layer 1 head 0 is an induction head (score {score:.2f}) (run {run.pk})"
    )
    assert (induction.layer_name, induction.unit_indices) == ("blocks.1.attn", [0])
    assert induction.status == "hypothesis"
    assert list(induction.evidence_runs.all()) == [run]
    assert Finding.objects.filter(subject_model=run.subject_model).count() == len(roles)
    assert run.environment["dataset_fingerprint"] == result["dataset_fingerprint"]


def test_the_run_page_shows_the_head_scores_rounded_and_undefined_ones_said_so(profiled, client_r):
    rows = profiled.result["head_scores"]
    page = client_r.get(profiled.get_absolute_url()).content.decode()
    induction = rows[2]["induction"]
    assert f"<td>{induction:.3f}</td>" in page
    assert str(induction) not in page.replace(f"{induction:.3f}", "")
    assert profiled.result["proposed_findings"][0]["text"] in page
    result = profiled.result
    result["head_scores"][0]["duplicate_token"] = None
    AnalysisRun.objects.filter(pk=profiled.pk).update(result=result)
    page = client_r.get(profiled.get_absolute_url()).content.decode()
    assert page.count('<td><span class="muted">undefined</span></td>') == 1


def test_ablating_an_induction_head_is_compared_with_random_heads_and_becomes_evidence(
    profiled, researcher_user
):
    finding = Finding.objects.get(subject_model=profiled.subject_model, concept="induction")
    run = services.ablation_request(
        actor=researcher_user, finding=finding, config={**PROBE, "random_sets": 3},
        dispatch=False,
    )  # fmt: skip
    assert run.config["finding"]["layer_name"] == "blocks.1.attn"
    assert run_all(run) == ["finished"]
    assert run.status == "succeeded", run.error
    ablation = run.result["ablation"]
    assert (ablation["layer"], ablation["units"]) == ("blocks.1.attn", [0])
    assert ablation["random_sets"] == [[1], [1], [1]]
    # the planted induction head predicts the repeats; without it none is right, and the
    # other head (all weights zero) changes nothing
    assert ablation["baseline"]["accuracy"] > 0.5
    assert ablation["ablated"]["accuracy"] < 0.2
    assert ablation["random_drops"] == [0.0, 0.0, 0.0]
    assert set(finding.evidence_runs.all()) == {profiled, run}


def test_a_transformer_without_weights_is_trained_on_the_task_first(researcher_user):
    model = subject_model_create(
        actor=researcher_user, name="Tiny", kind="builtin", architecture_spec=TINY_TRANSFORMER
    )
    config = {"dataset": {"name": "induction"}, "train": {"steps": 3, "batch_size": 8},
              "probe_size": 8}  # fmt: skip
    run = services.profile_request(
        actor=researcher_user, subject_model=model, config=config, dispatch=False
    )
    assert run.config["train"] == {"steps": 3, "batch_size": 8, "learning_rate": 0.003,
                                   "weight_decay": 0.0, "optimizer": "adamw"}  # fmt: skip
    assert run_all(run) == ["finished"]
    assert run.status == "succeeded", run.error
    assert run.result["model_metrics"]["source"] == "trained for this run"
    assert len(run.result["head_scores"]) == 4
    assert set(run.result["profile"]["neurons"]["layers"]) == {"blocks.1.mlp"}


def test_bad_task_settings_are_refused_keyed_by_setting_and_nothing_is_queued(
    researcher_user,
):
    model = register_planted(researcher_user)
    bad = {"dataset": {"name": "induction", "length": 17}, "train": {"steps": 0},
           "probe_size": 4, "concept": "x"}  # fmt: skip
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        services.profile_request(
            actor=researcher_user, subject_model=model, config=bad, dispatch=False
        )
    assert excinfo.value.message_dict == {
        "concept": ["unknown setting. Expected one of dataset, train, seed, probe_size."],
        "dataset.length": ["the model takes at most 16 positions (n_ctx)."],
        "train.steps": ["must be a whole number from 1 to 20000, got 0."],
        "probe_size": ["must be a whole number from 8 to 4096, got 4."],
    }
    assert not AnalysisRun.objects.exists()
    modular = {"dataset": {"name": "modular-addition", "p": 7}}
    with pytest.raises(ValidationError) as excinfo:
        services.profile_request(
            actor=researcher_user, subject_model=model, config=modular, dispatch=False
        )
    assert list(excinfo.value.message_dict) == ["dataset.p"]


def test_the_api_queues_a_transformer_profiling_run_and_refuses_bad_task_settings(
    api_r, researcher_user
):
    model = register_planted(researcher_user)
    url = f"/api/models/{model.pk}/profile/"
    bad = {"config": {"dataset": {"name": "induction", "segment": 9}}}
    with nothing_written():
        response = api_r.post(url, bad, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "dataset.segment": ["must be at most half the length, so it can repeat."]
    }
    response = api_r.post(url, {"config": PROBE}, format="json")
    assert response.status_code == 202, response.content
    run = AnalysisRun.objects.get(pk=response.json()["id"])
    assert run.config["dataset"]["name"] == "induction"
    assert run.config["model"]["weights_sha256"] == model.weights_sha256


def test_stored_weights_that_do_not_fit_the_spec_fail_the_run_as_a_bad_request(
    researcher_user,
):
    other = {**planted_spec(), "d_model": planted_spec()["d_model"] + 1}
    upload = SimpleUploadedFile("planted.safetensors", hooked_weights())
    model = subject_model_create(
        actor=researcher_user, name="Mismatch", kind="builtin", architecture_spec=other,
        weights=upload,
    )  # fmt: skip
    run = services.profile_request(
        actor=researcher_user, subject_model=model, config=PROBE, dispatch=False
    )
    assert run_all(run) == ["failed"]
    assert run.failure == "bad_request"
    assert run.error.startswith("main: WeightsError: the weights do not fit this model")
    assert not Finding.objects.exists()
