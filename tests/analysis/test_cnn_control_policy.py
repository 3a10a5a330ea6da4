"""The "any operation" random control for CNN change experiments: asked for by the settings
(page, API and run_analysis share one cleaner), frozen into the run's plan, run, and shown on
the run page. The same-operation control stays the default, and a run that takes the default
freezes the same config as before controls had a policy, so earlier runs' digests still match
their reruns."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from analysis import configs, services
from analysis.frozen import config_digest, experiment_config_freeze
from analysis.models import AnalysisRun
from kb.forms import ExperimentForm
from kb.models import ArchitectureChange, Outcome
from tests.analysis import engine_helpers  # noqa: F401  (one torch thread)
from tests.analysis.jobs import QUICK, run_all
from tests.factories import ChangeFactory
from tests.helpers import nothing_written

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

ANY = {**QUICK, "seeds": 3, "control_policy": "any_operation", "control_seed": 0}
# What a CNN experiment froze before its control could have a policy; a default request
# freezes exactly these keys (the plan's control records its policy inside the plan).
FROZEN_KEYS = {
    "dataset", "train", "seeds", "control_seed", "concept", "version", "metric", "direction",
    "minimum_effect", "change", "model", "arms", "plan", "mechanism",
}  # fmt: skip


@pytest.fixture
def client_r(client, researcher_user):
    """The test client, signed in as the researcher."""
    client.force_login(researcher_user)
    return client


def test_the_default_control_freezes_the_same_keys_and_digest_as_asking_for_it(researcher_user):
    change = ChangeFactory()
    left_out = configs.experiment_config_clean({**QUICK, "seeds": 3})
    asked = configs.experiment_config_clean({**QUICK, "seeds": 3,
                                             "control_policy": "same_operation"})  # fmt: skip
    assert left_out == asked and "control_policy" not in asked
    for settings in (left_out, asked):
        settings["dataset"] = configs.dataset_fit_model(
            settings["dataset"], change.target_model.architecture_spec
        )
    frozen = [experiment_config_freeze(change, settings) for settings in (left_out, asked)]
    assert set(frozen[0]) == FROZEN_KEYS
    assert config_digest(frozen[0]) == config_digest(frozen[1])
    run = services.experiment_request(
        actor=researcher_user, change=change, config={**QUICK, "seeds": 3}, dispatch=False
    )
    assert run.config["plan"]["control"]["policy"] == "same_operation"
    assert run.config["plan"]["control"]["parameters"] == {"layer": "fc1", "units": 5}


def test_the_any_operation_control_is_frozen_into_the_plan(researcher_user):
    change = ChangeFactory()  # widen conv2 by 2 units: +398 parameters
    run = services.experiment_request(
        actor=researcher_user, change=change, config=ANY, dispatch=False
    )
    config = run.config
    assert set(config) == FROZEN_KEYS | {"control_policy"}
    assert config["control_policy"] == "any_operation"
    control = config["plan"]["control"]
    assert control["policy"] == "any_operation"
    # Every budget-matched (operation, place), the guided change itself left out.
    assert [(c["operation"], c["parameters"]) for c in control["candidates"]] == [
        ("widen_layer", {"layer": "conv1", "units": 5}),
        ("widen_layer", {"layer": "fc1", "units": 5}),
        ("insert_layer", {"after": "fc1", "layer": {"name": "fc_added1", "type": "linear",
                                                    "out_features": 22}}),
        ("insert_layer", {"after": "relu3", "layer": {"name": "fc_added1", "type": "linear",
                                                      "out_features": 22}}),
    ]  # fmt: skip
    assert (control["operation"], control["parameters"]["after"]) == ("insert_layer", "relu3")
    assert config["arms"]["control"] == control["result"]["spec"]
    budget = config["plan"]["variant"]["params_added"]
    assert budget == 398
    assert abs(control["result"]["params_added"] - budget) <= 0.05 * budget


@pytest.mark.parametrize(
    ("change_fields", "policy", "field", "message"),
    [
        ({}, "nearby", "control_policy",
         "must be one of same_operation, any_operation, got 'nearby'."),
        ({"operation": "remove_layer", "parameters": {"layer": "fc1"}}, "any_operation",
         "control_policy", "the any-operation control needs a change that adds parameters; "
         "this one adds -944."),
    ],
)  # fmt: skip
def test_a_control_the_change_cannot_have_is_refused_on_the_policy_and_nothing_written(
    researcher_user, change_fields, policy, field, message
):
    change = ChangeFactory(**change_fields)
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        services.experiment_request(
            actor=researcher_user, change=change, config={**ANY, "control_policy": policy},
            dispatch=False,
        )  # fmt: skip
    assert excinfo.value.message_dict == {field: [message]}
    change.refresh_from_db()
    assert change.status == ArchitectureChange.Status.PROPOSED


def test_an_any_operation_experiment_runs_and_the_run_page_says_how_its_control_was_drawn(
    researcher_user, client_r
):
    change = ChangeFactory()
    run = services.experiment_request(
        actor=researcher_user, change=change, config=ANY, dispatch=False
    )
    assert run_all(run) == ["done"] * 8 + ["finished"]
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    outcome = Outcome.objects.get(change=change)
    assert len(outcome.control_values) == 3
    page = client_r.get(run.get_absolute_url()).content.decode()
    drawn = "any operation at any place, same parameter budget"
    assert f"Random control drawn as: {drawn}.</p>" in page
    description = run.result["plan"]["control"]["result"]["description"]
    assert f'Random control: {description} <span class="muted" data-testid="control-policy">' in (
        page
    )


def test_a_run_frozen_before_controls_had_a_policy_says_it_drew_the_same_operation(
    researcher_user, client_r
):
    run = services.experiment_request(
        actor=researcher_user, change=ChangeFactory(), config={**QUICK, "seeds": 3},
        dispatch=False,
    )  # fmt: skip
    config = run.config
    del config["plan"]["control"]["policy"]
    AnalysisRun.objects.filter(pk=run.pk).update(config=config)
    page = client_r.get(run.get_absolute_url()).content.decode()
    assert "Random control drawn as: the same operation at another place.</p>" in page


# --- the experiment form and page, and the API ------------------------------------------------

FORM = {"dataset": "shapes", "dataset_size": "80", "epochs": "1", "seeds": "3",
        "control_policy": "any_operation", "control_seed": "0"}  # fmt: skip


def test_the_experiment_form_offers_the_policy_with_the_same_operation_first():
    form = ExperimentForm()
    assert form.fields["control_policy"].initial == "same_operation"
    assert [value for value, _ in form.fields["control_policy"].choices] == [
        "same_operation", "any_operation",
    ]  # fmt: skip
    bound = ExperimentForm(FORM)
    assert bound.is_valid(), bound.errors
    assert bound.config()["control_policy"] == "any_operation"
    # A form posted without the field (opened before it existed) asks for the default.
    without = ExperimentForm({key: value for key, value in FORM.items() if key != "control_policy"})
    assert without.is_valid(), without.errors
    assert "control_policy" not in without.config()


def test_the_experiment_page_starts_an_any_operation_experiment_and_shows_refusals_on_it(
    client_r,
):
    change = ChangeFactory(operation="remove_layer", parameters={"layer": "fc1"})
    url = reverse("change-experiment", args=[change.pk])
    with nothing_written():
        refused = client_r.post(url, FORM)
    assert refused.context["form"].errors == {
        "control_policy": [
            "the any-operation control needs a change that adds parameters; this one adds -944."
        ]
    }
    change = ChangeFactory()
    client_r.post(reverse("change-experiment", args=[change.pk]), FORM)
    run = AnalysisRun.objects.get()
    assert run.config["plan"]["control"]["policy"] == "any_operation"


def test_running_again_keeps_the_any_operation_control(client_r, researcher_user):
    change = ChangeFactory()
    run = services.experiment_request(
        actor=researcher_user, change=change, config=ANY, dispatch=False
    )
    run_all(run)
    form = client_r.get(reverse("change-experiment", args=[change.pk])).context["form"]
    assert form.initial["control_policy"] == "any_operation"


def test_the_api_takes_the_policy_and_refuses_a_bad_one_by_field(researcher_user):
    api = APIClient()
    api.force_authenticate(researcher_user)
    change = ChangeFactory()
    url = f"/api/changes/{change.pk}/run-experiment/"
    with nothing_written():
        refused = api.post(url, {"config": {**ANY, "control_policy": 3}}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {
        "control_policy": ["must be one of same_operation, any_operation, got 3."]
    }
    response = api.post(url, {"config": ANY}, format="json")
    assert response.status_code == 202, response.content
    run = AnalysisRun.objects.get(pk=response.json()["id"])
    assert run.config["control_policy"] == run.config["plan"]["control"]["policy"]
