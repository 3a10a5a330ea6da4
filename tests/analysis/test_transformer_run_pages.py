"""Profiling and ablation of a transformer from the pages: the forms take a sequence task and
its options, training steps and a probe set, checked by the same cleaner as the API (errors
beside their fields, nothing written); the run page names the task and the head roles found
instead of a concept; and a run, or an experiment, is requested again with the settings it
froze (the same config digest)."""

import pytest
from django.urls import reverse

from analysis import services
from analysis.configs import transformer_run_config_clean
from analysis.models import AnalysisRun
from kb.forms import TransformerAblationForm, TransformerProfileForm
from kb.services.subjects import finding_create, subject_model_create
from tests.analysis.jobs import run_all
from tests.analysis.test_transformer_experiments import TINY, TWO_LAYERS, transformer_change
from tests.analysis.test_transformer_models import PROBE, register_planted
from tests.analysis.transformer_helpers import TINY_TRANSFORMER
from tests.factories import BuiltinModelFactory
from tests.helpers import nothing_written

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

# TINY_TRANSFORMER takes 16 positions over 12 tokens (modular addition: p = 11).
PROFILE_FORM = {"task": "induction", "length": "12", "segment": "3", "steps": "3",
                "probe_size": "8", "seed": "4"}  # fmt: skip
ABLATION_FORM = {**PROFILE_FORM, "mode": "mean", "random_sets": "3"}


@pytest.fixture
def client_r(client, researcher_user):
    """The test client, signed in as the researcher."""
    client.force_login(researcher_user)
    return client


@pytest.fixture
def tiny(researcher_user):
    """A two-block transformer without weights (runs train it on the task first)."""
    return subject_model_create(
        actor=researcher_user, name="Tiny", kind="builtin", architecture_spec=TINY_TRANSFORMER
    )


@pytest.fixture
def head_finding(researcher_user, tiny):
    return finding_create(
        actor=researcher_user, subject_model=tiny, title="A previous-token head",
        layer_name="blocks.0.attn", unit_indices=[1], concept="previous-token",
    )  # fmt: skip


# --- the forms: one cleaner, errors beside their fields --------------------------------------


def test_the_profile_form_gives_the_config_the_cleaner_takes():
    form = TransformerProfileForm(PROFILE_FORM, spec=TINY_TRANSFORMER)
    assert form.is_valid(), form.errors
    assert form.config() == {
        "dataset": {"name": "induction", "length": 12, "segment": 3},
        "train": {"steps": 3}, "probe_size": 8, "seed": 4,
    }  # fmt: skip


def test_only_the_chosen_tasks_options_are_sent():
    data = {**PROFILE_FORM, "task": "modular-addition", "train_fraction": "0.5",
            "split_seed": "3"}  # fmt: skip
    form = TransformerAblationForm({**data, "mode": "zero", "random_sets": "2"},
                                   spec=TINY_TRANSFORMER)  # fmt: skip
    assert form.is_valid(), form.errors
    config = form.config()
    assert config["dataset"] == {"name": "modular-addition", "train_fraction": 0.5,
                                 "split_seed": 3}  # fmt: skip
    assert (config["mode"], config["random_sets"]) == ("zero", 2)
    cleaned = transformer_run_config_clean(config, kind="ablation", spec=TINY_TRANSFORMER)
    assert cleaned["dataset"]["p"] == 11


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"length": "17"}, "length", "the model takes at most 16 positions (n_ctx)."),
        ({"segment": "7"}, "segment", "must be at most half the length, so it can repeat."),
        ({"eval_seed": "-1"}, "eval_seed",
         "must be a whole number from 0 to 2147483647 for induction, got -1."),
        ({"task": "modular-addition", "train_fraction": "0.99"}, "train_fraction",
         "must be a number from 0.05 to 0.95, got 0.99."),
        ({"steps": "0"}, "steps", "must be a whole number from 1 to 20000, got 0."),
        ({"probe_size": "4"}, "probe_size", "must be a whole number from 8 to 4096, got 4."),
        ({"seed": "-2"}, "seed", "must be a whole number from 0 to 2147483647, got -2."),
        ({"task": "shapes"}, "task",
         "Select a valid choice. shapes is not one of the available choices."),
    ],
)  # fmt: skip
def test_the_profile_form_shows_the_cleaners_errors_beside_their_fields(data, field, message):
    form = TransformerProfileForm({**PROFILE_FORM, **data}, spec=TINY_TRANSFORMER)
    assert not form.is_valid()
    assert form.errors == {field: [message]}


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"random_sets": "1"}, "random_sets", "must be a whole number from 2 to 500, got 1."),
        ({"mode": "half"}, "mode", "Select a valid choice."),
    ],
)
def test_the_ablation_form_checks_its_own_settings_too(data, field, message):
    form = TransformerAblationForm({**ABLATION_FORM, **data}, spec=TINY_TRANSFORMER)
    assert not form.is_valid()
    assert list(form.errors) == [field]
    assert message in form.errors[field][0]


# --- the pages -------------------------------------------------------------------------------


def test_the_profile_page_of_a_transformer_takes_a_task_and_starts_the_run(client_r, tiny):
    assert f'href="{reverse("model-profile", args=[tiny.pk])}"' in (
        client_r.get(tiny.get_absolute_url()).content.decode()
    )
    url = reverse("model-profile", args=[tiny.pk])
    page = client_r.get(url).content.decode()
    assert 'name="task"' in page and 'name="probe_size"' in page
    assert 'name="epochs"' not in page and 'name="concept"' not in page
    with nothing_written():
        refused = client_r.post(url, {**PROFILE_FORM, "length": "40", "steps": "0"})
    assert refused.status_code == 200
    assert refused.context["form"].errors == {
        "length": ["the model takes at most 16 positions (n_ctx)."],
        "steps": ["must be a whole number from 1 to 20000, got 0."],
    }
    started = client_r.post(url, PROFILE_FORM)
    run = AnalysisRun.objects.get()
    assert started.url == run.get_absolute_url()
    assert (run.kind, run.subject_model) == (AnalysisRun.Kind.PROFILE, tiny)
    assert run.config["dataset"] == {"name": "induction", "length": 12, "segment": 3,
                                     "eval_seed": 10_000}  # fmt: skip
    assert (run.config["train"]["steps"], run.config["probe_size"], run.config["seed"]) == (
        3, 8, 4,
    )  # fmt: skip


def test_the_ablation_page_of_a_transformer_finding_takes_a_task_and_starts_the_run(
    client_r, head_finding
):
    url = reverse("finding-ablate", args=[head_finding.pk])
    page = client_r.get(url).content.decode()
    assert 'name="task"' in page and 'name="random_sets"' in page and 'name="epochs"' not in page
    with nothing_written():
        refused = client_r.post(url, {**ABLATION_FORM, "random_sets": "1", "segment": "9"})
    assert refused.context["form"].errors == {
        "segment": ["must be at most half the length, so it can repeat."],
        "random_sets": ["must be a whole number from 2 to 500, got 1."],
    }
    client_r.post(url, ABLATION_FORM)
    run = AnalysisRun.objects.get()
    assert (run.kind, run.finding) == (AnalysisRun.Kind.ABLATION, head_finding)
    assert (run.config["mode"], run.config["random_sets"]) == ("mean", 3)
    assert run.config["finding"]["layer_name"] == "blocks.0.attn"


def test_a_transformer_finding_outside_heads_and_neurons_is_refused_on_the_form(client_r, tiny):
    finding = finding_create(
        actor=None, subject_model=tiny, title="Somewhere", layer_name="blocks.1.attn",
        unit_indices=[0],
    )  # fmt: skip
    # The finding is valid where it was recorded; then its layer no longer holds units.
    type(finding).objects.filter(pk=finding.pk).update(layer_name="blocks.1.hook_resid_post")
    with nothing_written():
        refused = client_r.post(reverse("finding-ablate", args=[finding.pk]), ABLATION_FORM)
    assert refused.status_code == 200
    assert refused.context["form"].non_field_errors() == [
        "The model has no layer 'blocks.1.hook_resid_post' with heads or neurons; ablation "
        "takes one of blocks.0.attn, blocks.1.attn, blocks.1.mlp."
    ]


# --- the run page and running again ----------------------------------------------------------


@pytest.fixture
def profiled(researcher_user):
    """A profiling run of the planted model (a previous-token and an induction head)."""
    model = register_planted(researcher_user)
    run = services.profile_request(
        actor=researcher_user, subject_model=model, config=PROBE, dispatch=False
    )
    assert run_all(run) == ["finished"]
    return run


def test_the_run_page_names_the_task_and_the_head_roles_instead_of_a_concept(client_r, profiled):
    page = client_r.get(profiled.get_absolute_url()).content.decode()
    roles = "; ".join(
        f"{p['role'].replace('_', '-')} (layer {p['block']} head {p['head']})"
        for p in profiled.result["proposed_findings"]
    )
    assert "previous-token (layer 0 head 0); induction (layer 1 head 0)" in roles
    assert (
        "Task: <strong>induction</strong> (length 16, segment 4, eval seed 10000). "
        f"Head roles profiling found: {roles}.</p>"
    ) in page
    assert "Concept:" not in page
    again = f"{reverse('model-profile', args=[profiled.subject_model.pk])}?from_run={profiled.pk}"
    assert f'href="{again}">Profile again with these settings</a>' in page


def test_profiling_again_from_a_run_requests_the_settings_it_froze(client_r, profiled):
    url = reverse("model-profile", args=[profiled.subject_model.pk])
    response = client_r.get(f"{url}?from_run={profiled.pk}")
    form = response.context["form"]
    assert form.initial == {
        "task": "induction", "length": 16, "segment": 4, "eval_seed": 10_000,
        "steps": profiled.config["train"]["steps"], "probe_size": 16, "seed": 0,
    }  # fmt: skip
    assert f"The form starts from the settings of run {profiled.pk}." in (response.content.decode())
    data = {name: form.initial.get(name, "") for name in form.fields}
    client_r.post(f"{url}?from_run={profiled.pk}", data)
    again = AnalysisRun.objects.exclude(pk=profiled.pk).get()
    assert again.config_digest == profiled.config_digest
    assert again.reproduces == profiled


def test_a_from_run_of_another_target_or_kind_is_ignored(client_r, profiled, tiny):
    for url in (
        f"{reverse('model-profile', args=[tiny.pk])}?from_run={profiled.pk}",
        f"{reverse('model-profile', args=[profiled.subject_model.pk])}?from_run=x{profiled.pk}",
        f"{reverse('model-profile', args=[profiled.subject_model.pk])}?from_run={10**30}",
    ):
        response = client_r.get(url)
        assert response.status_code == 200
        assert response.context["form"].initial == {}


def test_a_cnn_profile_run_is_requested_again_with_its_settings(client_r, researcher_user):
    model = BuiltinModelFactory()
    earlier = services.profile_request(
        actor=researcher_user, subject_model=model, dispatch=False,
        config={"dataset": {"name": "shapes", "n": 80}, "train": {"epochs": 2},
                "concept": "circle"},
    )  # fmt: skip
    url = f"{reverse('model-profile', args=[model.pk])}?from_run={earlier.pk}"
    form = client_r.get(url).context["form"]
    assert form.initial == {"dataset": "shapes", "dataset_size": 80, "epochs": 2,
                            "concept": "circle"}  # fmt: skip
    client_r.post(url, {name: form.initial.get(name, "") for name in form.fields})
    again = AnalysisRun.objects.exclude(pk=earlier.pk).get()
    assert again.config_digest == earlier.config_digest


def test_a_transformer_experiment_runs_again_with_the_settings_it_froze(client_r, researcher_user):
    config = {**TINY, "dataset": {**TINY["dataset"], "eval_seed": 7},
              "control_policy": "same_operation", "control_seed": 0}  # fmt: skip
    change = transformer_change(TWO_LAYERS, operation="add_heads",
                                parameters={"block": 0, "heads": 1})  # fmt: skip
    earlier = services.experiment_request(
        actor=researcher_user, change=change, config=config, dispatch=False
    )
    assert run_all(earlier) == ["done"] * 8 + ["finished"]
    url = reverse("change-experiment", args=[change.pk])
    response = client_r.get(url)
    form = response.context["form"]
    assert form.initial == {
        "task": "induction", "length": 12, "segment": 3, "eval_seed": 7, "steps": 3,
        "probe_size": 8, "control_policy": "same_operation", "control_seed": 0,
        "seeds": 6,  # twice the latest outcome's seeds
    }  # fmt: skip
    assert f"The form starts from the settings of run {earlier.pk}." in (response.content.decode())
    data = {name: form.initial.get(name, "") for name in form.fields} | {"seeds": "3"}
    client_r.post(url, data)
    again = AnalysisRun.objects.exclude(pk=earlier.pk).get()
    assert again.config_digest == earlier.config_digest
    assert again.reproduces == earlier
