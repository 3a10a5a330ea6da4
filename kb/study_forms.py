"""The forms that start a guided-search study: one for built-in CNNs and MLPs (an image dataset,
epochs and a concept), one for built-in transformers (a sequence task, steps, a probe set and a
head role with its threshold). Their fields only parse; the study's settings are checked by the
study cleaner (analysis.engine.study_settings, through the study service), the one the API and
run_analysis use, and each of its errors is shown next to the field its key names
(`CONFIG_FIELDS`, else the field of the same name)."""

from django import forms
from django.core.exceptions import ValidationError

from analysis.engine import study_settings
from analysis.engine.run_settings import DEFAULT_SEEDS, SettingsError
from analysis.engine.study_rules import (
    CNN_RULES,
    DEFAULT_BUDGET_FRACTION,
    DEFAULT_HEAD_ROLE,
    DEFAULT_ROLE_THRESHOLD,
    GUIDED_RULES,
    HEAD_ROLES,
    TRANSFORMER_RULES,
    WIDEN_MOST_SELECTIVE,
)
from kb.forms import (
    RunSettingsForm,
    TransformerRunSettingsForm,
    _bounded_integer,
    form_add_service_errors,
)
from kb.models import SubjectModel

TRACK_LABELS = {
    "guided": "Guided: a written rule turns the profile into the next change",
    "random": "Random: any change of the same size, from a recorded seed",
    "uniform": "Uniform: every unit-holding layer widened alike",
}
CNN, TRANSFORMER = "cnn", "transformer"


def study_models(family: str = CNN) -> list[SubjectModel]:
    """The built-in models of one family a study can start from: CNNs and MLPs, or
    transformers."""
    builtin = SubjectModel.objects.filter(kind=SubjectModel.Kind.BUILTIN).order_by("name")
    return [model for model in builtin if model.is_transformer == (family == TRANSFORMER)]


def study_form_family(model_id: str | None, family: str | None) -> str:
    """The family whose form a study page shows: the one asked for, else the model's that the
    page was opened for (?model=), else CNNs."""
    if family in (CNN, TRANSFORMER):
        return family
    model = (
        SubjectModel.objects.filter(pk=model_id, kind=SubjectModel.Kind.BUILTIN).first()
        if str(model_id or "").isdigit()
        else None
    )
    return TRANSFORMER if model is not None and model.is_transformer else CNN


def _rule_field(rules: tuple[str, ...], initial: str) -> forms.ChoiceField:
    return forms.ChoiceField(
        choices=[(key, GUIDED_RULES[key].capitalize()) for key in rules],
        initial=initial,
        label="Guided rule",
    )


class StudyDesignForm(forms.Form):
    """What every study sets whatever its model's family: the base model (of the form's
    family), the seeds per evaluation, the rounds, the parameter budget per round, the tracks
    and the random track's seed."""

    FAMILY = CNN
    DESIGN_FIELDS = ("seeds", "rounds", "budget_fraction", "rule", "tracks", "random_seed")

    model = forms.TypedChoiceField(coerce=int, label="Base model")
    seeds = _bounded_integer(
        "seeds",
        initial=DEFAULT_SEEDS,
        help_text="Training runs per evaluation; candidates are compared by seed.",
    )
    rounds = forms.IntegerField(
        initial=study_settings.DEFAULT_ROUNDS,
        widget=forms.NumberInput(
            attrs={"min": study_settings.ROUNDS_BOUNDS[0], "max": study_settings.ROUNDS_BOUNDS[1]}
        ),
    )
    budget_fraction = forms.FloatField(
        initial=DEFAULT_BUDGET_FRACTION,
        label="Budget per round",
        widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="Parameters a round may add, as a fraction of the current model's: 0.10 is +10%.",
    )
    tracks = forms.MultipleChoiceField(
        choices=list(TRACK_LABELS.items()),
        initial=list(TRACK_LABELS),
        widget=forms.CheckboxSelectMultiple,
        help_text="The guided track and at least one control.",
    )
    random_seed = forms.IntegerField(
        initial=0, min_value=0, help_text="Draws the random track's changes."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.models = {model.pk: model for model in study_models(self.FAMILY)}
        self.fields["model"].choices = [(pk, model.name) for pk, model in self.models.items()]

    def clean(self) -> dict:
        # The settings are checked against the chosen model's spec by the study cleaner (the
        # study service runs it again), not by the run cleaner of the form this extends.
        data = forms.Form.clean(self)
        if not self.errors:
            spec = self.subject_model().architecture_spec
            try:
                study_settings.study_config_clean(self.config(), spec=spec)
            except SettingsError as error:
                problems = ValidationError(error.field_errors)
                form_add_service_errors(self, problems, self.CONFIG_FIELDS)
        return data

    def subject_model(self) -> SubjectModel:
        return self.models[self.cleaned_data["model"]]

    def design(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.DESIGN_FIELDS}


class StudyForm(StudyDesignForm, RunSettingsForm):
    """A study of a CNN or MLP: the dataset and training of every evaluation and the concept
    that guides the search, besides the design every study sets."""

    CONFIG_FIELDS = {
        **RunSettingsForm.CONFIG_FIELDS,
        "dataset.size": "dataset",
        "train.learning_rate": "learning_rate",
        "subject_model": "model",
    }
    DESIGN_FIELDS = (*StudyDesignForm.DESIGN_FIELDS, "concept")

    learning_rate = forms.FloatField(
        required=False,
        widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="Empty: the model's own learning rate.",
    )
    concept = forms.CharField(
        required=False,
        help_text="The class or attribute that guides the search, e.g. curvature for shapes.",
    )
    rule = _rule_field(CNN_RULES, WIDEN_MOST_SELECTIVE)

    field_order = [
        "model", "dataset", "dataset_size", "epochs", "learning_rate", "seeds", "rounds",
        "budget_fraction", "concept", "rule", "tracks", "random_seed",
    ]  # fmt: skip

    def config(self) -> dict:
        """Out: the study's settings as the form's fields set them, before the cleaner."""
        config = self.base_config()
        if self.cleaned_data.get("learning_rate") is not None:
            config["train"]["learning_rate"] = self.cleaned_data["learning_rate"]
        return config | self.design()


class TransformerStudyForm(StudyDesignForm, TransformerRunSettingsForm):
    """A study of a transformer: the sequence task, training steps and probe set (as its
    experiments take them), the head role that guides the search and the score at which a
    head plays it, besides the design every study sets."""

    FAMILY = TRANSFORMER
    CONFIG_FIELDS = {**TransformerRunSettingsForm.CONFIG_FIELDS, "subject_model": "model"}
    DESIGN_FIELDS = (*StudyDesignForm.DESIGN_FIELDS, "probe_size", "head_role", "threshold")

    head_role = forms.ChoiceField(
        choices=[(role, role.replace("_", " ").capitalize()) for role in HEAD_ROLES],
        initial=DEFAULT_HEAD_ROLE,
        help_text="The head role that guides the search.",
    )
    threshold = forms.FloatField(
        initial=DEFAULT_ROLE_THRESHOLD,
        widget=forms.NumberInput(attrs={"step": "any", "min": 0, "max": 1}),
        help_text="The score (0 to 1) at which a head plays the role: until one does, the "
        "guided rule inserts an attention layer; then it adds heads where the best one sits.",
    )
    rule = _rule_field(TRANSFORMER_RULES, TRANSFORMER_RULES[0])

    field_order = [
        "model", "task", "length", "segment", "eval_seed", "train_fraction", "split_seed",
        "steps", "probe_size", "seeds", "rounds", "budget_fraction", "head_role", "threshold",
        "rule", "tracks", "random_seed",
    ]  # fmt: skip

    def __init__(self, *args, **kwargs):
        # The spec is the chosen model's, known once the form is cleaned (subject_model).
        super().__init__(*args, spec={}, **kwargs)

    def config(self) -> dict:
        """Out: the study's settings as the form's fields set them, before the cleaner: the
        task and its given options, steps, and the design."""
        task = TransformerRunSettingsForm.config(self)
        return {"dataset": task["dataset"], "train": task["train"]} | self.design()


STUDY_FORMS = {CNN: StudyForm, TRANSFORMER: TransformerStudyForm}
