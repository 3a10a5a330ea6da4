"""Change experiments on a transformer through the product: the change validated for its
model's family, the experiment frozen when requested (task, steps, arms, the random control
and its policy), one job per (arm, seed) run in this process as a worker would, and one
Outcome written with per-seed values and the head mechanism check."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from analysis import services
from analysis.engine.transformer_specs import count_transformer_parameters
from analysis.models import AnalysisJob, AnalysisRun
from kb.forms import TransformerExperimentForm
from kb.models import ArchitectureChange, Outcome
from kb.services.changes import change_create
from tests.analysis.jobs import run_all
from tests.analysis.transformer_helpers import TINY_TRANSFORMER  # noqa: F401 (runtime setup)
from tests.factories import BuiltinModelFactory, ChangeFactory, InsightFactory
from tests.helpers import nothing_written

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

# A one-layer attention-only model: the demo's story in miniature.
ONE_LAYER = {
    "family": "transformer",
    "d_vocab": 8,
    "n_ctx": 12,
    "d_model": 16,
    "d_head": 8,
    "blocks": [{"n_heads": 2}],
    "hyperparameters": {"batch_size": 8},
}
TWO_LAYERS = {**ONE_LAYER, "blocks": [{"n_heads": 2}, {"n_heads": 2}]}
# Three training steps and eight probe sequences: seconds for all nine jobs.
TINY = {
    "dataset": {"name": "induction", "length": 12, "segment": 3},
    "train": {"steps": 3},
    "seeds": 3,
    "probe_size": 8,
}
INSERT_SECOND_LAYER = {"operation": "insert_block", "parameters": {"after": 0, "n_heads": 2}}


def transformer_change(spec=ONE_LAYER, **fields) -> ArchitectureChange:
    fields = {**INSERT_SECOND_LAYER, "expected_metric": "test_loss",
              "expected_direction": "decrease", **fields}  # fmt: skip
    return ChangeFactory(target_model=BuiltinModelFactory(architecture_spec=spec), **fields)


# --- the experiment --------------------------------------------------------------------------


def test_an_experiment_writes_one_outcome_with_per_seed_values_and_the_head_check(
    researcher_user,
):
    change = transformer_change()
    run = services.experiment_request(
        actor=researcher_user, change=change, config=TINY, dispatch=False
    )
    assert sorted(run.jobs.values_list("key", flat=True)) == sorted(
        f"{arm}:{seed}" for arm in ("baseline", "variant", "control") for seed in (0, 1, 2)
    )
    assert run_all(run) == ["done"] * 8 + ["finished"]
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    jobs = {job.key: job.result for job in AnalysisJob.objects.filter(run=run)}
    # Each job trained its frozen arm: the control is not profiled, the other two are.
    for arm in ("baseline", "variant", "control"):
        for seed in (0, 1, 2):
            result = jobs[f"{arm}:{seed}"]
            assert result["seed"] == seed
            assert result["parameters"] == count_transformer_parameters(run.config["arms"][arm])
            assert (result["head_profile"] is None) == (arm == "control")
    # One outcome on the change's metric (the repeated half's loss), seed by seed.
    outcome = Outcome.objects.get(change=change)
    assert outcome.analysis_run == run
    assert outcome.metric == "test_loss"
    for arm, values in (("baseline", outcome.baseline_values),
                        ("variant", outcome.variant_values),
                        ("control", outcome.control_values)):  # fmt: skip
        assert values == [jobs[f"{arm}:{seed}"]["metrics"]["test_loss"] for seed in (0, 1, 2)]
    aggregate = run.result["aggregate"]
    assert outcome.verdict == aggregate["verdict"]
    assert outcome.effect == pytest.approx(aggregate["variant_vs_baseline"]["difference"])
    # The mechanism check asks whether the inserted layer's heads became induction heads.
    mechanism = aggregate["mechanism"]
    assert (mechanism["layer"], mechanism["added_heads"]) == ("blocks.1.attn", [0, 1])
    assert mechanism["score"] == "induction"
    assert [row["seed"] for row in mechanism["per_seed"]] == [0, 1, 2]
    for row in mechanism["per_seed"]:
        variant_heads = jobs[f"variant:{row['seed']}"]["head_profile"]["heads"]
        assert row["added_best"] == max(variant_heads["blocks.1.attn"]["induction"])
    assert f"- Mechanism check: {mechanism['interpretation']}." in outcome.notes
    change.refresh_from_db()
    assert change.status == ArchitectureChange.Status.EVALUATED
    # A second delivery of every message changes nothing.
    assert run_all(run) == ["gone"] * 9
    assert Outcome.objects.filter(change=change).count() == 1


def test_the_request_freezes_the_task_steps_arms_and_the_controls_policy(researcher_user):
    change = transformer_change()
    run = services.experiment_request(
        actor=researcher_user, change=change, config=TINY, dispatch=False
    )
    config = run.config
    assert config["family"] == "transformer"
    assert config["dataset"] == {"name": "induction", "length": 12, "segment": 3,
                                 "eval_seed": 10_000}  # fmt: skip
    assert config["train"]["steps"] == 3
    assert (config["seeds"], config["probe_size"]) == ([0, 1, 2], 8)
    assert (config["metric"], config["direction"]) == ("test_loss", "decrease")
    assert config["change"] == {"id": change.pk, **INSERT_SECOND_LAYER}
    assert config["arms"]["baseline"]["blocks"] == [{"n_heads": 2}]
    assert config["arms"]["variant"]["blocks"] == [{"n_heads": 2}, {"n_heads": 2}]
    # A transformer's control is the any-operation "random tweak" unless the run says so.
    assert config["control_policy"] == "any_operation"
    control = config["plan"]["control"]
    assert control["policy"] == "any_operation"
    assert config["arms"]["control"] == control["result"]["spec"]
    budget = config["plan"]["variant"]["params_added"]
    assert abs(control["result"]["params_added"] - budget) <= 0.05 * budget
    assert config["mechanism"] == {"layer": "blocks.1.attn", "added_heads": [0, 1]}


def test_the_same_operation_control_is_recorded_when_the_run_asks_for_it(researcher_user):
    change = transformer_change(
        TWO_LAYERS, operation="add_heads", parameters={"block": 0, "heads": 1}
    )
    run = services.experiment_request(
        actor=researcher_user, change=change,
        config={**TINY, "control_policy": "same_operation"}, dispatch=False,
    )  # fmt: skip
    assert run.config["control_policy"] == "same_operation"
    control = run.config["plan"]["control"]
    assert control["policy"] == "same_operation"
    assert (control["operation"], control["parameters"]) == ("add_heads", {"block": 1, "heads": 1})
    assert run.config["mechanism"] == {"layer": "blocks.0.attn", "added_heads": [2]}


# --- refusals: keyed by field, nothing written -----------------------------------------------


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"control_policy": "anywhere"}, "control_policy", "must be one of same_operation, "
         "any_operation, got 'anywhere'."),
        ({"dataset": {"name": "induction", "length": 40}}, "dataset.length",
         "the model takes at most 12 positions (n_ctx)."),
        ({"dataset": {"name": "shapes"}}, "dataset.name", "must be one of induction, "
         "modular-addition, got 'shapes'."),
        ({"train": {"steps": 0}}, "train.steps", "must be a whole number from 1 to 20000"),
        ({"train": {"epochs": 2}}, "train.epochs", "unknown setting."),
        ({"seeds": 1}, "seeds", "use 3 to 20 seeds, got 1."),
        ({"concept": "induction"}, "concept", "unknown setting."),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_by_field_and_nothing_written(
    researcher_user, config, field, message
):
    change = transformer_change()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        services.experiment_request(
            actor=researcher_user, change=change, config={**TINY, **config}, dispatch=False
        )
    assert list(excinfo.value.message_dict) == [field]
    assert message in " ".join(excinfo.value.message_dict[field])
    assert not AnalysisRun.objects.exists()
    change.refresh_from_db()
    assert change.status == ArchitectureChange.Status.PROPOSED


def test_a_change_without_a_same_operation_control_is_refused_under_that_policy(
    researcher_user,
):
    change = transformer_change()  # one block: no other place to insert one of that size
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        services.experiment_request(
            actor=researcher_user, change=change,
            config={**TINY, "control_policy": "same_operation"}, dispatch=False,
        )  # fmt: skip
    assert excinfo.value.message_dict == {
        "change": [
            "no budget-matched control exists for insert_block: no other place changes the "
            "parameter count by +1088 within 5%"
        ]
    }
    assert not AnalysisRun.objects.exists()


def test_a_metric_the_task_does_not_report_is_refused_on_the_change(researcher_user):
    change = transformer_change(expected_metric="repeated_loss")
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        services.experiment_request(
            actor=researcher_user, change=change, config=TINY, dispatch=False
        )
    assert excinfo.value.message_dict == {
        "change": ["must be one of test_accuracy, test_loss, train_loss."]
    }


# --- the change itself: its operation must fit its model's family ----------------------------


@pytest.mark.parametrize(
    ("spec", "operation", "parameters", "errors"),
    [
        (None, "insert_block", {"after": 0, "n_heads": 2}, {"operation": [
            "insert_block applies to transformers; must be one of widen_layer, insert_layer, "
            "remove_layer, set_hyperparameter, manual"]}),
        (ONE_LAYER, "widen_layer", {"layer": "conv2", "units": 2}, {"operation": [
            "must be one of insert_block, remove_block, add_heads, widen_mlp, "
            "set_hyperparameter for a transformer"]}),
        (ONE_LAYER, "add_heads", {"block": 0, "heads": 0}, {"parameters.heads": [
            "must be a positive integer"]}),
    ],
)  # fmt: skip
def test_a_change_that_does_not_fit_its_models_family_is_refused_by_field(
    researcher_user, spec, operation, parameters, errors
):
    model = BuiltinModelFactory(**({"architecture_spec": spec} if spec else {}))
    insight = InsightFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        change_create(
            actor=researcher_user, insight=insight, target_model=model,
            operation=operation, parameters=parameters,
        )  # fmt: skip
    assert excinfo.value.message_dict == errors


def test_a_transformer_operation_is_saved_on_a_transformer_model(researcher_user):
    change = change_create(
        actor=researcher_user, insight=InsightFactory(),
        target_model=BuiltinModelFactory(architecture_spec=ONE_LAYER), **INSERT_SECOND_LAYER,
    )  # fmt: skip
    change.refresh_from_db()
    assert (change.operation, change.get_operation_display()) == ("insert_block", "Insert a block")


# --- the change form -------------------------------------------------------------------------


@pytest.fixture
def client_r(client, researcher_user):
    """The test client, signed in as the researcher."""
    client.force_login(researcher_user)
    return client


def _form_data(model, operation: str, insight=None, **parameters) -> dict:
    return {
        "insight": (insight or InsightFactory()).pk, "target_model": model.pk,
        "operation": operation,
        "expected_metric": "test_loss", "expected_direction": "decrease",
        "minimum_effect": "0.01", **parameters,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("operation", "fields", "parameters"),
    [
        ("insert_block", {"after_block": "0", "n_heads": "2"}, {"after": 0, "n_heads": 2}),
        ("insert_block", {"after_block": "-1", "n_heads": "1", "d_mlp": "16"},
         {"after": -1, "n_heads": 1, "d_mlp": 16}),
        ("add_heads", {"block": "0", "heads": "1"}, {"block": 0, "heads": 1}),
        ("remove_block", {"block": "1"}, {"block": 1}),
    ],
)  # fmt: skip
def test_the_change_form_offers_the_transformer_operations(client_r, operation, fields, parameters):
    model = BuiltinModelFactory(architecture_spec=TWO_LAYERS)
    page = client_r.get(reverse("change-create")).content.decode()
    assert f'<option value="{operation}">' in page
    response = client_r.post(reverse("change-create"), _form_data(model, operation, **fields))
    change = ArchitectureChange.objects.get()
    assert response.url == change.get_absolute_url()
    assert (change.operation, change.parameters) == (operation, parameters)


def test_the_change_form_puts_transformer_errors_next_to_their_fields(client_r):
    transformer, cnn = BuiltinModelFactory(architecture_spec=ONE_LAYER), BuiltinModelFactory()
    insight = InsightFactory()
    with nothing_written():
        missing = client_r.post(
            reverse("change-create"), _form_data(transformer, "add_heads", insight, block="0")
        )
        no_block = client_r.post(
            reverse("change-create"),
            _form_data(transformer, "widen_mlp", insight, block="3", units="4"),
        )
        wrong_family = client_r.post(
            reverse("change-create"), _form_data(cnn, "add_heads", insight, block="0", heads="1")
        )
    assert missing.context["form"].errors["heads"] == ["This operation needs this field."]
    assert no_block.context["form"].errors["block"] == ["must be a block index from 0 to 0"]
    assert wrong_family.context["form"].errors["operation"] == [
        "add_heads applies to transformers; must be one of widen_layer, insert_layer, "
        "remove_layer, set_hyperparameter, manual"
    ]


# --- the API ---------------------------------------------------------------------------------


@pytest.fixture
def api_r(researcher_user) -> APIClient:
    """An API client signed in as the researcher."""
    client = APIClient()
    client.force_authenticate(researcher_user)
    return client


def test_the_api_queues_a_transformer_experiment_with_its_control_policy(api_r):
    change = transformer_change()
    response = api_r.post(
        f"/api/changes/{change.pk}/run-experiment/", {"config": TINY}, format="json"
    )
    assert response.status_code == 202, response.content
    run = AnalysisRun.objects.get()
    assert run.config["plan"]["control"]["policy"] == run.config["control_policy"]
    assert run.config["control_policy"] == "any_operation"


def test_the_api_refuses_bad_transformer_settings_by_field_with_nothing_written(api_r):
    change = transformer_change()
    config = {**TINY, "control_policy": "nearby", "train": {"steps": 0}}
    with nothing_written():
        response = api_r.post(
            f"/api/changes/{change.pk}/run-experiment/", {"config": config}, format="json"
        )
    assert response.status_code == 400
    assert set(response.json()) == {"control_policy", "train.steps"}
    assert not AnalysisRun.objects.exists()


def test_the_api_refuses_a_transformer_operation_on_a_cnn_on_operation(api_r):
    model, insight = BuiltinModelFactory(), InsightFactory()
    body = {"insight": insight.pk, "target_model": model.pk, **INSERT_SECOND_LAYER}
    with nothing_written():
        response = api_r.post("/api/changes/", body, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"operation"}


# --- the experiment form (for the experiment page of a transformer change) -------------------

FORM = {"task": "induction", "length": "12", "segment": "3", "steps": "3", "probe_size": "8",
        "seeds": "3", "control_policy": "any_operation", "control_seed": "0"}  # fmt: skip


def test_the_transformer_experiment_form_gives_a_config_the_service_runs(researcher_user):
    change = transformer_change()
    form = TransformerExperimentForm(FORM, spec=ONE_LAYER)
    assert form.is_valid(), form.errors
    assert form.config() == {**TINY, "control_policy": "any_operation", "control_seed": 0}
    run = services.experiment_request(
        actor=researcher_user, change=change, config=form.config(), dispatch=False
    )
    assert run.config["dataset"]["length"] == 12


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"length": "40"}, "length", "the model takes at most 12 positions (n_ctx)."),
        ({"segment": "9"}, "segment", "must be at most half the length, so it can repeat."),
        ({"steps": "0"}, "steps", "must be a whole number from 1 to 20000, got 0."),
        ({"control_policy": "nearby"}, "control_policy", "Select a valid choice."),
    ],
)
def test_the_transformer_experiment_form_shows_errors_next_to_their_fields(data, field, message):
    form = TransformerExperimentForm({**FORM, **data}, spec=ONE_LAYER)
    assert not form.is_valid()
    assert list(form.errors) == [field]
    assert message in form.errors[field][0]


def test_the_experiment_page_of_a_transformer_change_offers_the_task_and_starts_the_run(
    client_r, researcher_user
):
    change = transformer_change()
    url = reverse("change-experiment", args=[change.pk])
    page = client_r.get(url).content.decode()
    assert 'name="task"' in page and 'name="control_policy"' in page
    assert 'name="epochs"' not in page
    with nothing_written():
        refused = client_r.post(url, {**FORM, "segment": "9"})
    assert list(refused.context["form"].errors) == ["segment"]  # the form again, beside it
    started = client_r.post(url, FORM)
    run = AnalysisRun.objects.get()
    assert started.url == run.get_absolute_url()
    assert (run.config["dataset"]["length"], run.config["control_policy"]) == (12, "any_operation")
