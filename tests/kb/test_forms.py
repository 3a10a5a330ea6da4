"""Create and edit forms: values converted to the types services expect, errors shown next to
their fields, and nothing saved on error."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from analysis import configs
from analysis.models import AnalysisRun
from kb.forms import AblationForm, ExperimentForm, ProfileForm
from kb.models import (
    Answer,
    ArchitectureChange,
    Finding,
    Highlight,
    Insight,
    Interview,
    Researcher,
)
from tests.analysis.transformer_helpers import TINY_TRANSFORMER
from tests.factories import (
    BuiltinModelFactory,
    ChangeFactory,
    FindingFactory,
    InsightFactory,
    InterviewFactory,
    QuestionFactory,
    ResearcherFactory,
    SubjectModelFactory,
    SurveyFactory,
    ThemeFactory,
)
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


def test_researcher_form_creates_and_shows_constraint_errors(client_r):
    data = {
        "pseudonym": "P1",
        "role": "ml_engineer",
        "seniority": "senior",
        "consent_scope": "none",
    }
    response = client_r.post(reverse("researcher-create"), data)
    assert response.status_code == 302
    assert Researcher.objects.get().pseudonym == "P1"
    with nothing_written():
        response = client_r.post(
            reverse("researcher-create"), {**data, "pseudonym": "P2", "consent_given": "on"}
        )
    assert response.status_code == 200
    # Beside the consent field at fault (tests/kb/test_form_errors_beside_fields.py).
    assert response.context["form"].errors == {
        "consent_date": [
            "Consent needs a date and a scope; without consent the scope must be none."
        ]
    }


def test_duplicate_pseudonym_error_sits_next_to_its_field(client_r):
    ResearcherFactory(pseudonym="Taken")
    data = {"pseudonym": "Taken", "role": "other", "seniority": "junior", "consent_scope": "none"}
    with nothing_written():
        response = client_r.post(reverse("researcher-create"), data)
    assert response.context["form"].errors["pseudonym"] == [
        "Researcher with this Pseudonym already exists."
    ]
    assert 'id="id_pseudonym-errors"' in response.content.decode()


def test_a_survey_picked_in_the_dropdown_asks_for_each_answer_beside_its_question(
    client_r, researcher_user
):
    question = QuestionFactory(text="Useful?", required=True)
    data = {
        "researcher": ResearcherFactory().pk, "conducted_on": "2026-03-01",
        "interviewer": researcher_user.pk, "status": "draft", "transcript": "Hello",
        "survey": question.survey.pk,
    }  # fmt: skip
    with nothing_written():
        response = client_r.post(reverse("interview-create"), data)
    assert response.status_code == 200
    form = response.context["form"]
    assert list(form.errors) == [f"answer_{question.pk}"]
    assert "Useful?" in response.content.decode()


def test_interview_form_defaults_to_today_and_the_current_user(client_r, researcher_user):
    form = client_r.get(reverse("interview-create")).context["form"]
    assert form["conducted_on"].value() == timezone.localdate()
    assert form["interviewer"].value() == researcher_user.pk


def test_interview_form_records_answers_to_its_survey(client_r, researcher_user):
    question = QuestionFactory(text="Useful?")
    researcher = ResearcherFactory()
    url = reverse("interview-create") + f"?survey={question.survey.pk}"
    response = client_r.post(
        url,
        {
            "researcher": researcher.pk, "conducted_on": "2026-03-01",
            "interviewer": researcher_user.pk, "status": "draft",
            "transcript": "Line one\r\nLine two", f"answer_{question.pk}": "5",
        },
    )  # fmt: skip
    interview = Interview.objects.get()
    assert response.url == interview.get_absolute_url()
    assert interview.survey == question.survey
    assert interview.transcript == "Line one\nLine two"
    assert Answer.objects.get().likert == 5


def test_highlight_uses_the_selection_offsets(client_r):
    interview, theme = InterviewFactory(), ThemeFactory()
    start = interview.transcript.index("actionable steps")
    response = client_r.post(
        reverse("highlight-create", args=[interview.pk]),
        {"start": start, "end": start + 16, "quote": "actionable steps", "themes": [theme.pk]},
    )
    highlight = Highlight.objects.get()
    assert response.url == highlight.get_absolute_url()
    assert (highlight.start, highlight.end, list(highlight.themes.all())) == (
        start, start + 16, [theme],
    )  # fmt: skip


def test_highlight_without_offsets_finds_a_typed_quote(client_r):
    interview, theme = InterviewFactory(), ThemeFactory()
    client_r.post(
        reverse("highlight-create", args=[interview.pk]),
        {"quote": "pretty pictures", "themes": [theme.pk]},
    )
    assert Highlight.objects.get().start == interview.transcript.index("pretty pictures")


def test_highlight_with_wrong_offsets_or_no_theme_writes_nothing(client_r):
    interview, theme = InterviewFactory(), ThemeFactory()
    url = reverse("highlight-create", args=[interview.pk])
    with nothing_written():
        wrong = client_r.post(
            url, {"start": 0, "end": 5, "quote": "actionable", "themes": [theme.pk]}
        )
        untagged = client_r.post(url, {"quote": "actionable"})
        missing = client_r.post(url, {"quote": "not in it", "themes": [theme.pk]})
    assert wrong.status_code == 400
    assert wrong.context["highlight_form"].errors["quote"] == [
        "The offsets do not select exactly this quote."
    ]
    assert untagged.context["highlight_form"].errors["themes"] == ["This field is required."]
    assert missing.context["highlight_form"].errors["quote"] == [
        "This text does not occur in the transcript."
    ]


def test_finding_form_parses_units_and_checks_them_against_the_model(client_r):
    model = BuiltinModelFactory()
    data = {
        "subject_model": model.pk, "title": "Edges", "kind": "feature", "layer_name": "conv2",
        "unit_indices": "1, 2 3", "status": "hypothesis", "confidence": "0.5",
    }  # fmt: skip
    client_r.post(reverse("finding-create"), data)
    assert Finding.objects.get().unit_indices == [1, 2, 3]
    with nothing_written():
        response = client_r.post(
            reverse("finding-create"), {**data, "title": "Too far", "unit_indices": "1, 99"}
        )
    assert response.context["form"].errors["unit_indices"] == [
        "Layer conv2 has 8 units; out of range: 99."
    ]
    with nothing_written():
        response = client_r.post(reverse("finding-create"), {**data, "confidence": "1.7"})
    assert response.context["form"].errors["confidence"] == ["Confidence must lie between 0 and 1."]


def test_insight_form_puts_a_both_ways_link_beside_the_lists(client_r):
    finding = FindingFactory()
    data = {"title": "Both", "statement": "S", "understanding_level": 1, "relevance": "both",
            "status": "open", "supporting_findings": [finding.pk],
            "contradicting_findings": [finding.pk]}  # fmt: skip
    with nothing_written():
        response = client_r.post(reverse("insight-create"), data)
    assert response.context["form"].errors["contradicting_findings"] == [
        "An item cannot both support and contradict an insight."
    ]


def _change_data(insight, model, **parameters):
    return {
        "insight": insight.pk, "target_model": model.pk, "operation": "widen_layer",
        "expected_metric": "test_accuracy", "expected_direction": "increase",
        "minimum_effect": "0.01", **parameters,
    }  # fmt: skip


def test_change_form_builds_typed_parameters(client_r):
    insight, model = InsightFactory(), BuiltinModelFactory()
    client_r.post(reverse("change-create"), _change_data(insight, model, layer="conv2", units="2"))
    assert ArchitectureChange.objects.get().parameters == {"layer": "conv2", "units": 2}


def test_change_form_errors_sit_next_to_the_parameter_fields(client_r):
    insight, model = InsightFactory(), BuiltinModelFactory()
    with nothing_written():
        missing = client_r.post(
            reverse("change-create"), _change_data(insight, model, layer="conv2")
        )
        unknown = client_r.post(
            reverse("change-create"), _change_data(insight, model, layer="conv9", units="2")
        )
        negative = client_r.post(
            reverse("change-create"), _change_data(insight, model, layer="conv2", units="-3")
        )
    assert missing.context["form"].errors["units"] == ["This operation needs this field."]
    assert 'name="new_layer"' in missing.content.decode()
    assert "null</textarea>" not in missing.content.decode()
    assert negative.context["form"].errors["units"] == [
        "Ensure this value is greater than or equal to 1."
    ]
    assert unknown.context["form"].errors["layer"] == [
        "no layer named 'conv9'; the model's layers are conv1, relu1, pool1, conv2, relu2, "
        "pool2, flatten, fc1, relu3, fc_out"
    ]


SHAPES_LAYERS = [
    "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc_out",
]  # fmt: skip


def test_change_form_marks_each_parameter_field_with_the_operations_that_use_it(client_r):
    form = client_r.get(reverse("change-create")).context["form"]
    marks = {name: form.fields[name].widget.attrs.get("data-operations") for name in form.fields}
    assert marks == {
        "insight": None, "target_model": None, "operation": None,
        "layer": "widen_layer remove_layer", "units": "widen_layer widen_mlp",
        "after": "insert_layer", "new_layer": "insert_layer",
        "hp_name": "set_hyperparameter", "hp_value": "set_hyperparameter",
        "description": "manual", "after_block": "insert_block", "n_heads": "insert_block",
        "block": "remove_block add_heads widen_mlp", "heads": "add_heads", "d_mlp": "insert_block",
        "expected_metric": None, "expected_direction": None, "minimum_effect": None,
        "rationale": None,
    }  # fmt: skip
    # The parameters follow the operation, where the page's script reveals the chosen ones.
    assert list(form.fields)[2:5] == ["operation", "layer", "units"]


def test_change_form_offers_the_chosen_models_layers(client_r):
    model = BuiltinModelFactory()
    # Their changes name blocks, or no layer at all: nothing to offer
    others = [BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER), SubjectModelFactory()]
    html = client_r.get(reverse("change-create"), {"model": model.pk}).content.decode()
    options = "".join(f'<option value="{name}"></option>' for name in SHAPES_LAYERS)
    assert f'<datalist id="layers-of-model-{model.pk}">{options}</datalist>' in html
    assert html.count("<datalist") == 1
    for other in others:
        assert f"layers-of-model-{other.pk}" not in html
    for name in ("layer", "after"):
        assert re.search(rf'<input[^>]*name="{name}"[^>]*list="layers-of-model-{model.pk}"', html)
    # No model chosen yet: the lists are on the page, the fields point at none
    fresh = client_r.get(reverse("change-create")).content.decode()
    assert f'<datalist id="layers-of-model-{model.pk}">' in fresh
    assert ' list="layers-of-model-' not in fresh


@pytest.mark.parametrize("chosen", ["\u00b2", "-1", "1e3", "x"])
def test_change_form_with_a_model_choice_that_is_no_id_offers_no_list(client_r, chosen):
    BuiltinModelFactory()
    response = client_r.get(reverse("change-create"), {"model": chosen})
    assert response.status_code == 200
    assert ' list="layers-of-model-' not in response.content.decode()


def test_a_field_the_chosen_operation_does_not_use_cannot_stop_the_save(client_r):
    insight, model = InsightFactory(), BuiltinModelFactory()
    data = _change_data(insight, model, layer="fc1", units="-3", new_layer="{not json")
    response = client_r.post(reverse("change-create"), {**data, "operation": "remove_layer"})
    change = ArchitectureChange.objects.get()
    assert response.url == change.get_absolute_url()
    assert change.parameters == {"layer": "fc1"}


def test_without_an_operation_every_parameter_field_is_still_checked(client_r):
    insight, model = InsightFactory(), BuiltinModelFactory()
    data = {**_change_data(insight, model, units="-3"), "operation": ""}
    with nothing_written():
        response = client_r.post(reverse("change-create"), data)
    assert response.context["form"].errors == {
        "operation": ["This field is required."],
        "units": ["Ensure this value is greater than or equal to 1."],
    }


def test_experiment_form_accepts_a_small_configuration(client_r):
    change = ChangeFactory()
    response = client_r.post(
        reverse("change-experiment", args=[change.pk]),
        {
            "dataset": "shapes",
            "dataset_size": "80",
            "epochs": "1",
            "seeds": "3",
            "control_seed": "0",
        },
    )
    run = AnalysisRun.objects.get()
    assert response.url == run.get_absolute_url()
    assert run.config["seeds"] == [0, 1, 2]
    assert run.config["dataset"] == {"name": "shapes", "n": 80, "seed": 0, "size": 12}
    assert run.config["train"] == {"epochs": 1}
    change.refresh_from_db()
    assert change.status == "running"


def test_experiment_form_refuses_too_few_seeds_and_writes_nothing(client_r):
    change = ChangeFactory()
    with nothing_written():
        response = client_r.post(
            reverse("change-experiment", args=[change.pk]),
            {"dataset": "shapes", "epochs": "1", "seeds": "2", "control_seed": "0"},
        )
    assert response.context["form"].errors == {"seeds": ["use 3 to 20 seeds, got 2."]}


# --- run settings: the forms show analysis.configs' bounds and refuse what it refuses --------

EXPERIMENT_DATA = {"dataset": "shapes", "epochs": "1", "seeds": "3", "control_seed": "0"}
RUN_FORMS = {
    "experiment": (ExperimentForm, EXPERIMENT_DATA),
    "profile": (ProfileForm, {"dataset": "shapes", "epochs": "1", "concept": ""}),
    "ablation": (AblationForm, {"dataset": "shapes", "epochs": "1", "mode": "zero",
                                "random_sets": "4"}),
}  # fmt: skip


def _widget_bounds(form, field: str) -> tuple:
    attrs = form.fields[field].widget.attrs
    return attrs.get("min"), attrs.get("max")


def test_run_form_widgets_show_the_bounds_the_server_checks():
    experiment, ablation, profile = ExperimentForm(), AblationForm(), ProfileForm()
    assert _widget_bounds(experiment, "seeds") == configs.BOUNDS["seeds"]
    assert _widget_bounds(experiment, "control_seed") == configs.BOUNDS["control_seed"]
    assert _widget_bounds(ablation, "random_sets") == configs.BOUNDS["random_sets"]
    for form in (experiment, ablation, profile):
        assert _widget_bounds(form, "epochs") == configs.BOUNDS["train.epochs"]
        # One widget serves every dataset: it spans all their sizes and names each range.
        assert _widget_bounds(form, "dataset_size") == (20, 60_000)
        assert form.fields["dataset_size"].help_text == (
            "Examples to generate or load: shapes 40 to 50000, digits 20 to 1797, "
            "fashion-mnist 20 to 60000."
        )
        assert [value for value, _ in form.fields["dataset"].choices] == list(configs.DATASET_NAMES)
    assert profile.fields["concept"].widget.attrs["maxlength"] == configs.BOUNDS["concept"][1]
    assert [value for value, _ in ablation.fields["mode"].choices] == list(configs.CHOICES["mode"])


@pytest.mark.parametrize(
    ("kind", "changes", "field", "message"),
    [
        ("experiment", {"dataset_size": "20"}, "dataset_size",
         "must be a whole number from 40 to 50000 for shapes, got 20."),
        ("experiment", {"dataset": "digits", "dataset_size": "1798"}, "dataset_size",
         "must be a whole number from 20 to 1797 for digits, got 1798."),
        ("experiment", {"seeds": "21"}, "seeds", "use 3 to 20 seeds, got 21."),
        ("experiment", {"seeds": "1000000"}, "seeds", "use 3 to 20 seeds, got 1000000."),
        ("experiment", {"control_seed": str(2**31)}, "control_seed",
         "must be a whole number from 0 to 2147483647, got 2147483648."),
        ("experiment", {"control_seed": str(10**30)}, "control_seed",
         "must be a whole number from 0 to 2147483647, got a larger number."),
        ("experiment", {"epochs": "101"}, "epochs",
         "must be a whole number from 1 to 100, got 101."),
        ("profile", {"epochs": "0"}, "epochs", "must be a whole number from 1 to 100, got 0."),
        ("profile", {"concept": "wings"}, "concept",
         "shapes has no class or attribute 'wings'; use one of line, arc, circle, corner, "
         "curvature, orientation."),
        ("profile", {"concept": "x" * 1_000_000}, "concept",
         "must be a class or attribute name of at most 100 characters."),
        ("ablation", {"random_sets": "501"}, "random_sets",
         "must be a whole number from 2 to 500, got 501."),
        ("ablation", {"random_sets": "1"}, "random_sets",
         "must be a whole number from 2 to 500, got 1."),
    ],
)  # fmt: skip
def test_a_run_form_refuses_what_the_server_refuses_under_the_right_field(
    kind, changes, field, message
):
    form_class, data = RUN_FORMS[kind]
    form = form_class({**data, **changes})
    assert not form.is_valid()
    assert form.errors == {field: [message]}


@pytest.mark.parametrize(
    ("kind", "changes"),
    [
        ("experiment", {"dataset": "digits", "dataset_size": "20"}),
        ("experiment", {"dataset": "fashion-mnist", "dataset_size": "60000"}),
        ("experiment", {"dataset_size": "50000", "seeds": "20", "epochs": "100"}),
        ("experiment", {"control_seed": str(2**31 - 1)}),
        ("profile", {"dataset": "digits", "concept": "7"}),
        ("profile", {"concept": "curvature"}),
        ("ablation", {"mode": "mean", "random_sets": "500"}),
        ("ablation", {"random_sets": "2", "dataset_size": "40"}),
    ],
)
def test_a_run_form_accepts_what_the_server_accepts(kind, changes):
    form_class, data = RUN_FORMS[kind]
    form = form_class({**data, **changes})
    assert form.is_valid(), form.errors
    assert form_class.config_clean(form.config())


def test_experiment_page_refuses_a_dataset_size_of_20_and_writes_nothing(client_r):
    change = ChangeFactory()
    with nothing_written():
        response = client_r.post(
            reverse("change-experiment", args=[change.pk]),
            {**EXPERIMENT_DATA, "dataset_size": "20"},
        )
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "dataset_size": ["must be a whole number from 40 to 50000 for shapes, got 20."]
    }
    change.refresh_from_db()
    assert change.status == "proposed"


def test_experiment_page_shows_a_dataset_the_model_cannot_take_next_to_the_dataset(client_r):
    change = ChangeFactory()
    with nothing_written():
        response = client_r.post(
            reverse("change-experiment", args=[change.pk]), {**EXPERIMENT_DATA, "dataset": "digits"}
        )
    assert response.context["form"].errors == {
        "dataset": [
            "digits gives inputs [1, 8, 8] and 10 classes; the model takes [1, 12, 12] and "
            "4 classes."
        ]
    }


def test_profile_page_refuses_a_concept_the_dataset_lacks_and_writes_nothing(client_r):
    model = BuiltinModelFactory()
    with nothing_written():
        response = client_r.post(
            reverse("model-profile", args=[model.pk]),
            {"dataset": "shapes", "epochs": "1", "concept": "wings"},
        )
    assert list(response.context["form"].errors) == ["concept"]


def test_ablation_page_starts_a_run_with_the_forms_settings(client_r):
    finding = FindingFactory(subject_model=BuiltinModelFactory(), layer_name="conv2")
    response = client_r.post(
        reverse("finding-ablate", args=[finding.pk]),
        {"dataset": "shapes", "dataset_size": "80", "epochs": "1", "mode": "mean",
         "random_sets": "4"},
    )  # fmt: skip
    run = AnalysisRun.objects.get()
    assert response.url == run.get_absolute_url()
    settings = ("dataset", "train", "seed", "mode", "random_sets")
    assert {key: run.config[key] for key in settings} == {
        "dataset": {"name": "shapes", "n": 80, "seed": 0, "size": 12},
        "train": {"epochs": 1}, "seed": 0, "mode": "mean", "random_sets": 4,
    }  # fmt: skip


def test_manual_outcome_form_parses_values(client_r):
    change = ChangeFactory(target_model=BuiltinModelFactory())
    client_r.post(
        reverse("outcome-create", args=[change.pk]),
        {"verdict": "", "baseline_values": "0.8, 0.82", "variant_values": "0.85 0.86"},
    )
    outcome = change.outcomes.get()
    assert (outcome.baseline_values, outcome.variant_values) == ([0.8, 0.82], [0.85, 0.86])
    # Two seeds' interval, [-0.0185, 0.1085], spans 0: the computed verdict
    assert outcome.verdict == "inconclusive"


def test_run_can_be_cancelled_then_retried_from_its_page(client_r, researcher_user):
    from analysis.services import experiment_request

    run = experiment_request(actor=researcher_user, change=ChangeFactory(), dispatch=False)
    client_r.post(reverse("run-cancel", args=[run.pk]), {"confirmed": "yes"})
    run.refresh_from_db()
    assert run.status == "cancelled"
    client_r.post(reverse("run-retry", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == "queued"


def test_markdown_preview_is_sanitised(client_r):
    response = client_r.post(reverse("markdown-preview"), {"text": "**hi** <script>x</script>"})
    assert response.content.decode() == "<p><strong>hi</strong> </p>"


def test_edit_form_saves_through_the_service_and_logs_it(client_r):
    survey = SurveyFactory(title="Old")
    client_r.post(reverse("survey-update", args=[survey.pk]), {"title": "New", "description": ""})
    survey.refresh_from_db()
    assert survey.title == "New"
    assert survey.history.count() == 2


def test_insight_edit_links_more_evidence_once(client_r):
    insight = InsightFactory()
    finding = Finding.objects.create(
        subject_model=BuiltinModelFactory(), title="F", layer_name="conv1"
    )
    data = {
        "title": insight.title, "statement": "S", "understanding_level": 1,
        "relevance": "both", "status": "open", "supporting_findings": [finding.pk],
    }  # fmt: skip
    for _ in range(2):  # each time from the form as it opens, with the insight's version
        version = Insight.objects.get(pk=insight.pk).version
        client_r.post(reverse("insight-update", args=[insight.pk]), {**data, "version": version})
    assert list(insight.finding_links.values_list("finding_id", "stance")) == [
        (finding.pk, "supports")
    ]
