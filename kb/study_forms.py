"""The form that starts a guided-search study. Its fields only parse; the study's settings are
checked by the study cleaner (analysis.engine.study_settings, through the study service), the
one the API and run_analysis use, and each of its errors is shown next to the field its key
names (`StudyForm.CONFIG_FIELDS`, else the field of the same name)."""

from django import forms
from django.core.exceptions import ValidationError

from analysis.engine import study_settings
from analysis.engine.run_settings import DEFAULT_SEEDS, SettingsError
from analysis.engine.study_rules import (
    DEFAULT_BUDGET_FRACTION,
    GUIDED_RULES,
    WIDEN_MOST_SELECTIVE,
)
from kb.forms import RunSettingsForm, _bounded_integer, form_add_service_errors
from kb.models import SubjectModel

TRACK_LABELS = {
    "guided": "Guided: a written rule turns the profile into the next change",
    "random": "Random: any change of the same size, from a recorded seed",
    "uniform": "Uniform: every unit-holding layer widened alike",
}


def study_models() -> list[SubjectModel]:
    """The models a study can start from: built-in CNNs and MLPs (transformers come later)."""
    builtin = SubjectModel.objects.filter(kind=SubjectModel.Kind.BUILTIN).order_by("name")
    return [model for model in builtin if not model.is_transformer]


class StudyForm(RunSettingsForm):
    """A study's settings: the base model, the dataset and training of every evaluation, the
    seeds per evaluation, the rounds, the parameter budget per round, the concept that guides
    the search, the guided rule and the tracks to compare."""

    CONFIG_FIELDS = {
        **RunSettingsForm.CONFIG_FIELDS,
        "dataset.size": "dataset",
        "train.learning_rate": "learning_rate",
        "subject_model": "model",
    }

    model = forms.TypedChoiceField(coerce=int, label="Base model")
    learning_rate = forms.FloatField(
        required=False,
        widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="Empty: the model's own learning rate.",
    )
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
    concept = forms.CharField(
        required=False,
        help_text="The class or attribute that guides the search, e.g. curvature for shapes.",
    )
    rule = forms.ChoiceField(
        choices=[(key, text.capitalize()) for key, text in GUIDED_RULES.items()],
        initial=WIDEN_MOST_SELECTIVE,
        label="Guided rule",
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

    field_order = [
        "model", "dataset", "dataset_size", "epochs", "learning_rate", "seeds", "rounds",
        "budget_fraction", "concept", "rule", "tracks", "random_seed",
    ]  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.models = {model.pk: model for model in study_models()}
        self.fields["model"].choices = [(pk, model.name) for pk, model in self.models.items()]

    def clean(self) -> dict:
        # RunSettingsForm's cleaner takes no model; a study's settings are checked against
        # the chosen model's spec by the study cleaner (the study service runs it again).
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

    def config(self) -> dict:
        """Out: the study's settings as the form's fields set them, before the cleaner."""
        data = self.cleaned_data
        config = self.base_config()
        if data.get("learning_rate") is not None:
            config["train"]["learning_rate"] = data["learning_rate"]
        names = ("seeds", "rounds", "budget_fraction", "concept", "rule", "tracks", "random_seed")
        return config | {name: data[name] for name in names}
