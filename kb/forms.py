"""Forms for the site's pages. Forms only parse and check input; every write goes through a
service, whose ValidationError is shown next to the fields it names (`form_add_service_errors`).
ModelForms here skip the model's own validation (`_post_clean`) because the services run
`full_clean` themselves, on the instance they save."""

import datetime
import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from analysis import configs
from kb import selectors, transcripts
from kb.models import (
    Answer,
    ArchitectureChange,
    Finding,
    Highlight,
    Insight,
    Interview,
    Outcome,
    Question,
    Researcher,
    SubjectModel,
    Survey,
    Theme,
)
from kb.models.people import CONSENT_FIELDS
from kb.models.surveys import LIKERT_MAX, LIKERT_MIN
from kb.services.invitations import DEFAULT_VALID_DAYS, MAX_VALID_DAYS
from kb.services.records import RecordChanged
from kb.statistics import outcome_verdict_reason, run_settings, theme_scope_validate

MARKDOWN_WIDGET = forms.Textarea(attrs={"rows": 8, "data-markdown": "true"})
# ChangeError fields -> form fields, per operation (insert_layer's "layer" is the new layer).
CHANGE_PARAMETER_FIELDS = {
    "widen_layer": {"layer": "layer", "units": "units"},
    "insert_layer": {"after": "after", "layer": "new_layer"},
    "remove_layer": {"layer": "layer"},
    "set_hyperparameter": {"name": "hp_name", "value": "hp_value"},
    "manual": {"description": "description"},
    # Transformers: blocks are numbered from 0 (insert_block's "after" -1: before block 0).
    "insert_block": {"after": "after_block", "n_heads": "n_heads"},
    "remove_block": {"block": "block"},
    "add_heads": {"block": "block", "heads": "heads"},
    "widen_mlp": {"block": "block", "units": "units"},
}
# Parameters an operation takes only when given (insert_block without d_mlp: attention only).
CHANGE_OPTIONAL_PARAMETER_FIELDS = {"insert_block": {"d_mlp": "d_mlp"}}


def form_add_service_errors(form: forms.Form, error: ValidationError, aliases=None) -> None:
    """Attach a service's ValidationError to the form: to the field it names when the form has
    that field (after `aliases`), else to the form as a whole. A save refused because the
    record changed since the form was opened also moves the form on to the current version
    (VersionedModelForm), so that saving again, after a look, is taken as meant."""
    aliases = aliases or {}
    if isinstance(error, RecordChanged) and isinstance(form, VersionedModelForm):
        form.take_version(error.current_version)
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for field, messages in error.message_dict.items():
        for message in messages:
            name, text = _error_target(field, message, aliases)
            form.add_error(name if name in form.fields else None, text)


def _error_target(field: str, message: str, aliases: dict) -> tuple[str | None, str]:
    # A change's parameter errors arrive keyed by parameter: {"parameters.units": [...]}.
    _, dot, parameter = field.partition("parameters.")
    if dot and parameter in aliases:
        return aliases[parameter], message
    return aliases.get(field, field), message


class ServiceModelForm(forms.ModelForm):
    """A ModelForm for widgets and field checks only; the service validates and saves."""

    def _post_clean(self) -> None:
        return None


STALE_FORM = (
    "This form does not say which version of the record it was opened on, so saving it could "
    "overwrite someone else's changes. Open the edit page again and redo your changes there."
)


class VersionedModelForm(ServiceModelForm):
    """The edit form of a record that carries a version (insights, findings, changes): it
    holds, hidden, the version it was opened on, and `opened_version` hands it to the
    service, which refuses the save with RecordChanged if the record was saved since. A new
    record's form has no version."""

    version = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.opened_version: int | None = None
        if self.instance.pk is None:
            del self.fields["version"]
        else:
            self.initial["version"] = self.instance.version

    def clean(self) -> dict:
        data = super().clean()
        if "version" in self.fields:
            # Kept out of the record's fields: the version is a condition, not a value to save.
            text = data.pop("version", "") or ""
            if text.isdigit() and len(text) < 10:
                self.opened_version = int(text)
            else:
                self.add_error(None, STALE_FORM)
        return data

    def take_version(self, version: int | None) -> None:
        """Show the user's input again with the record's current version, so the next save
        replaces that version (nothing to take when the record was deleted)."""
        if version is not None and "version" in self.fields:
            self.data = self.data.copy()
            self.data[self.add_prefix("version")] = str(version)


class IntegerListField(forms.CharField):
    """ "1, 2, 3" -> [1, 2, 3]."""

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(str(item) for item in value)
        return value

    def to_python(self, value) -> list[int]:
        text = super().to_python(value)
        try:
            return [int(part) for part in text.replace(",", " ").split()]
        except ValueError:
            raise ValidationError("Enter whole numbers separated by commas.") from None


class FloatListField(forms.CharField):
    """ "0.91, 0.92" -> [0.91, 0.92], one value per seed."""

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(str(item) for item in value)
        return value

    def to_python(self, value) -> list[float]:
        text = super().to_python(value)
        try:
            return [float(part) for part in text.replace(",", " ").split()]
        except ValueError:
            raise ValidationError("Enter numbers separated by commas.") from None


class LineListField(forms.CharField):
    """One item a line -> ["first", "second"]; blank lines are dropped."""

    widget = forms.Textarea(attrs={"rows": 4})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(value)
        return value

    def to_python(self, value) -> list[str]:
        text = super().to_python(value)
        return [line.strip() for line in text.splitlines() if line.strip()]


class ResearcherForm(ServiceModelForm):
    class Meta:
        model = Researcher
        fields = [
            "pseudonym", "role", "seniority", "research_area", "full_name", "affiliation",
            "contact_email", "consent_given", "consent_date", "consent_scope",
        ]  # fmt: skip
        widgets = {"consent_date": forms.DateInput(attrs={"type": "date"})}

    def clean(self) -> dict:
        """The model's consent rule, checked here as well, so that its error shows beside the
        consent field to fix together with any other field's error (the service, which checks
        it again, runs only once every field is valid)."""
        data = super().clean()
        if any(name in self.errors for name in CONSENT_FIELDS):
            return data
        try:
            Researcher(**{name: data.get(name) for name in CONSENT_FIELDS}).consent_validate()
        except ValidationError as error:
            self.add_error(None, error)
        return data


class SurveyForm(ServiceModelForm):
    class Meta:
        model = Survey
        fields = ["title", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 4})}


class QuestionForm(ServiceModelForm):
    choices = LineListField(required=False, help_text="Choice questions only: one choice per line.")

    class Meta:
        model = Question
        fields = ["text", "kind", "choices", "required"]
        widgets = {"text": forms.Textarea(attrs={"rows": 2})}


def _answer_field(question: Question) -> forms.Field:
    common = {"label": question.text, "required": question.required}
    if question.kind == Question.Kind.LIKERT:
        options = [(value, str(value)) for value in range(LIKERT_MIN, LIKERT_MAX + 1)]
        return forms.TypedChoiceField(
            choices=options,
            coerce=int,
            empty_value=None,
            widget=forms.RadioSelect,
            help_text=f"{LIKERT_MIN} = strongly disagree, {LIKERT_MAX} = strongly agree.",
            **common,
        )
    if question.kind == Question.Kind.SINGLE_CHOICE:
        return forms.ChoiceField(
            choices=[(c, c) for c in question.choices], widget=forms.RadioSelect, **common
        )
    if question.kind == Question.Kind.MULTIPLE_CHOICE:
        return forms.MultipleChoiceField(
            choices=[(c, c) for c in question.choices],
            widget=forms.CheckboxSelectMultiple,
            **common,
        )
    return forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), **common)


def _stored_value(answer: Answer) -> Any:
    """An answer as its question's field shows it."""
    kind = answer.question.kind
    if kind == Question.Kind.LIKERT:
        return answer.likert
    if kind == Question.Kind.SINGLE_CHOICE:
        return answer.selected_choices[0] if answer.selected_choices else ""
    if kind == Question.Kind.MULTIPLE_CHOICE:
        return answer.selected_choices
    return answer.text


class AnswersMixin:
    """Adds one field per survey question, named `answer_<question id>`."""

    def add_answer_fields(self, questions: list[Question], answers=()) -> None:
        self.questions = list(questions)
        for question in self.questions:
            self.fields[f"answer_{question.pk}"] = _answer_field(question)
        for answer in answers:
            self.initial[f"answer_{answer.question_id}"] = _stored_value(answer)

    def answers(self) -> dict[int, Any]:
        return {q.pk: self.cleaned_data.get(f"answer_{q.pk}") for q in self.questions}

    def answer_fields(self):
        return [self[f"answer_{question.pk}"] for question in self.questions]


class SurveyResponseForm(AnswersMixin, forms.Form):
    """The questionnaire a respondent fills in through an invitation link."""

    def __init__(self, *args, questions: list[Question], **kwargs):
        super().__init__(*args, **kwargs)
        self.add_answer_fields(questions)


def _normalise_newlines(text: str) -> str:
    # Browsers submit CRLF; the page's DOM has LF only, and highlight offsets come from the DOM.
    return text.replace("\r\n", "\n").replace("\r", "\n")


class InterviewForm(AnswersMixin, ServiceModelForm):
    """An interview; a transcript file, when given, replaces the typed transcript."""

    interviewer = forms.ModelChoiceField(
        queryset=get_user_model().objects.order_by("username"), required=False
    )
    transcript_file = forms.FileField(
        required=False,
        label="Or upload a file",
        help_text="A .txt, .docx, .vtt or .srt file; it replaces the transcript above. "
        "Speaker turns (“Name: text” lines, WebVTT voices, bold names) are kept.",
        widget=forms.FileInput(attrs={"accept": ",".join(transcripts.FORMATS)}),
    )
    interviewee_speaker = forms.CharField(
        required=False,
        max_length=80,
        label="Speaker who is the interviewee",
        help_text="Their name as the file gives it; their turns are labelled with the "
        "researcher's pseudonym instead, so their real name is not stored.",
    )
    field_order = [
        "researcher", "conducted_on", "interviewer", "survey", "status", "transcript",
        "transcript_file", "interviewee_speaker", "summary",
    ]  # fmt: skip
    # Read by the form, never stored as such: the file becomes `transcript`.
    upload_fields = ("transcript_file", "interviewee_speaker")

    class Meta:
        model = Interview
        fields = [
            "researcher", "conducted_on", "interviewer", "survey", "status", "transcript",
            "summary",
        ]  # fmt: skip
        widgets = {
            "conducted_on": forms.DateInput(attrs={"type": "date"}),
            "transcript": forms.Textarea(attrs={"rows": 14, "data-markdown": "true"}),
            "summary": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args, questions=(), answers=(), **kwargs):
        """`questions` get answer fields, filled from the stored `answers` when editing."""
        super().__init__(*args, **kwargs)
        self.fields["interviewer"].label_from_instance = lambda user: user.get_username()
        self.add_answer_fields(questions, answers)
        if questions:
            self.fields["survey"].disabled = True
        if answers:
            self.fields["survey"].help_text = "Fixed: the interview has answers to this survey."
        if self.instance.pk and questions and questions[0].survey_id == self.instance.survey_id:
            self._unanswered_are_optional(answers)

    def _unanswered_are_optional(self, answers) -> None:
        # Questions added to the survey after the interview must not block editing it.
        answered = {answer.question_id for answer in answers}
        for question in self.questions:
            if question.pk not in answered:
                field = self.fields[f"answer_{question.pk}"]
                field.required = False
                field.help_text = f"{field.help_text} Unanswered so far; optional here.".strip()

    def record_fields(self) -> dict:
        return {
            k: v
            for k, v in self.cleaned_data.items()
            if not k.startswith("answer_") and k not in self.upload_fields
        }

    def clean_transcript(self) -> str:
        return _normalise_newlines(self.cleaned_data["transcript"])

    def clean(self) -> dict:
        data = super().clean()
        upload, speaker = data.get("transcript_file"), data.get("interviewee_speaker")
        if upload:
            self._transcript_from_file(data, upload, speaker)
        elif speaker:
            self.add_error("interviewee_speaker", "Name the interviewee along with a file.")
        return data

    def _transcript_from_file(self, data: dict, upload, speaker: str) -> None:
        try:
            transcript = transcripts.transcript_from_uploaded_file(upload)
        except transcripts.TranscriptFileRefused as error:
            self.add_error("transcript_file", error)
            return
        researcher = data.get("researcher")  # None: its field already has an error
        if speaker and researcher:
            try:
                transcript = transcript.with_speaker_renamed(speaker, researcher.pseudonym)
            except transcripts.TranscriptFileRefused as error:
                self.add_error("interviewee_speaker", error)
                return
        data["transcript"] = transcript.text


class HighlightForm(forms.Form):
    """A passage selected on the interview page; the offsets come from the selection. Without
    offsets (no pointer, keyboard only), the quote is looked up in the source text; a quote
    that occurs more than once is coded where the coder chooses (`occurrence`, its start)."""

    start = forms.IntegerField(min_value=0, required=False, widget=forms.HiddenInput)
    end = forms.IntegerField(min_value=1, required=False, widget=forms.HiddenInput)
    answer = forms.IntegerField(required=False, widget=forms.HiddenInput)
    quote = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Select a passage above, or type or paste it exactly.",
    )
    occurrence = forms.IntegerField(min_value=0, required=False, widget=forms.HiddenInput)
    themes = forms.ModelMultipleChoiceField(
        queryset=Theme.objects.all(), widget=forms.CheckboxSelectMultiple
    )
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, interview: Interview, **kwargs):
        super().__init__(*args, **kwargs)
        self.interview = interview

    def clean(self) -> dict:
        data = super().clean()
        quote = _normalise_newlines(data.get("quote") or "")
        data["quote"] = quote
        answer_id = data.get("answer")
        data["answer"] = None
        if answer_id:
            data["answer"] = self.interview.answers.filter(pk=answer_id).first()
            if data["answer"] is None:
                raise ValidationError("That answer is not part of this interview.")
        if quote and (data.get("start") is None or data.get("end") is None):
            source = data["answer"].text if data["answer"] else self.interview.transcript
            start = self._typed_quote_start(source, quote, data.pop("occurrence", None))
            if start is not None:
                data["start"], data["end"] = start, start + len(quote)
        data.pop("occurrence", None)
        return data

    def _typed_quote_start(self, source: str, quote: str, chosen: int | None) -> int | None:
        """Where a typed quote starts in `source`; None, with the error on the form, when it
        does not occur or occurs more than once and `chosen` is not one of its starts."""
        if chosen is not None and quote and source.startswith(quote, chosen):
            return chosen
        starts = _occurrences(source, quote, limit=MAX_OCCURRENCE_CHOICES + 1)
        if len(starts) == 1:
            return starts[0]
        if not starts:
            self.add_error("quote", "This text does not occur in the transcript.")
            return None
        if len(starts) > MAX_OCCURRENCE_CHOICES:
            self.add_error(
                "quote",
                f"This text occurs more than {MAX_OCCURRENCE_CHOICES} times; type a longer "
                "passage so that it says which one you mean.",
            )
            return None
        self.fields["occurrence"] = forms.TypedChoiceField(
            label="Which occurrence?",
            coerce=int,
            required=False,
            choices=[(start, _in_context(source, start, len(quote))) for start in starts],
            widget=forms.RadioSelect,
        )
        self._bound_fields_cache.pop("occurrence", None)  # render the new field, not the hidden one
        self.add_error(
            "occurrence",
            f"This text occurs {len(starts)} times; choose the one you mean and save again.",
        )
        return None


# A typed quote that occurs more often than this is refused rather than offered as choices:
# a one-character quote would otherwise list every occurrence in one page.
MAX_OCCURRENCE_CHOICES = 20


def _occurrences(text: str, quote: str, *, limit: int) -> list[int]:
    """Out: the starts of the first `limit` occurrences of `quote` in `text`, overlapping
    ones included."""
    starts, found = [], text.find(quote)
    while found != -1 and len(starts) < limit:
        starts.append(found)
        found = text.find(quote, found + 1)
    return starts


QUOTE_CONTEXT = 40  # characters shown on each side of a typed quote's occurrence


def _in_context(text: str, start: int, length: int) -> str:
    before = text[max(0, start - QUOTE_CONTEXT) : start]
    after = text[start + length : start + length + QUOTE_CONTEXT]
    quote = text[start : start + length]
    return (
        f"At character {start}: {'…' if start > QUOTE_CONTEXT else ''}{before}"
        f"«{quote}»{after}{'…' if start + length + QUOTE_CONTEXT < len(text) else ''}"
    )


class HighlightEditForm(ServiceModelForm):
    """A highlight's themes and note; its quote and offsets stay as selected."""

    class Meta:
        model = Highlight
        fields = ["themes", "note"]
        widgets = {
            "themes": forms.CheckboxSelectMultiple,
            "note": forms.Textarea(attrs={"rows": 2}),
        }
        error_messages = {"themes": {"required": "Tag the highlight with at least one theme."}}


class ThemeForm(ServiceModelForm):
    class Meta:
        model = Theme
        fields = ["name", "parent", "colour", "description"]
        widgets = {
            "colour": forms.TextInput(attrs={"type": "color"}),
            "description": forms.Textarea(attrs={"rows": 3}),
        }


class SubjectModelForm(ServiceModelForm):
    class Meta:
        model = SubjectModel
        fields = [
            "name", "kind", "family", "task", "dataset", "architecture_spec", "weights", "source",
        ]  # fmt: skip
        widgets = {
            "architecture_spec": forms.Textarea(attrs={"rows": 10, "class": "code"}),
            "source": forms.Textarea(attrs={"rows": 2}),
        }
        help_texts = {
            "architecture_spec": "Built-in models only: the JSON architecture spec, a CNN/MLP "
            'spec or a transformer spec ({"family": "transformer", ...}).'
        }


class FindingForm(VersionedModelForm):
    unit_indices = IntegerListField(
        required=False,
        help_text="Unit indices, separated by commas: channels or neurons, or a "
        "transformer's heads (layer blocks.N.attn) or MLP neurons (blocks.N.mlp).",
    )

    class Meta:
        model = Finding
        fields = [
            "subject_model", "title", "kind", "layer_name", "unit_indices", "concept", "status",
            "confidence", "description",
        ]  # fmt: skip
        widgets = {"description": MARKDOWN_WIDGET}


def _evidence_field(queryset, label: str) -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(
        queryset=queryset,
        required=False,
        label=label,
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )


class InsightForm(VersionedModelForm):
    supporting_findings = _evidence_field(
        Finding.objects.select_related("subject_model"), "Supporting findings"
    )
    contradicting_findings = _evidence_field(
        Finding.objects.select_related("subject_model"), "Contradicting findings"
    )
    supporting_highlights = _evidence_field(Highlight.objects.all(), "Supporting quotes")
    contradicting_highlights = _evidence_field(Highlight.objects.all(), "Contradicting quotes")

    EVIDENCE_FIELDS = (
        "supporting_findings",
        "contradicting_findings",
        "supporting_highlights",
        "contradicting_highlights",
    )

    class Meta:
        model = Insight
        fields = ["title", "statement", "understanding_level", "relevance", "status"]
        widgets = {"statement": MARKDOWN_WIDGET}

    def __init__(self, *args, user=None, **kwargs):
        """`user`: whose quotes to offer (a coder coding blind sees only their own)."""
        super().__init__(*args, **kwargs)
        for name in ("supporting_highlights", "contradicting_highlights"):
            field = self.fields[name]
            visible = selectors.highlights_visible(user=user, queryset=field.queryset)
            field.queryset = visible.select_related("interview__researcher")
            field.label_from_instance = _quote_choice_label

    def record_fields(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if k not in self.EVIDENCE_FIELDS}

    # The services' evidence errors name the kind; on the form they sit beside the second list.
    ERROR_ALIASES = {"findings": "contradicting_findings", "highlights": "contradicting_highlights"}

    def evidence(self) -> dict:
        return {name: list(self.cleaned_data[name]) for name in self.EVIDENCE_FIELDS}


QUOTE_CHOICE_LENGTH = 240  # a choice longer than this ends in "…"; most quotes fit whole


def _quote_choice_label(highlight: Highlight) -> str:
    """Whose quote, from which interview, and the quote itself (whole, up to a long cut)."""
    quote = " ".join(highlight.quote.split())
    if len(quote) > QUOTE_CHOICE_LENGTH:
        quote = quote[: QUOTE_CHOICE_LENGTH - 1].rstrip() + "…"
    interview = highlight.interview
    return f"{interview.researcher.pseudonym}, {interview.conducted_on:%Y-%m-%d}: “{quote}”"


class OptionalJSONField(forms.JSONField):
    """A JSON box that shows an empty value as empty, not as `null`."""

    def prepare_value(self, value):
        return "" if value is None else super().prepare_value(value)


def _operations_by_parameter_field() -> dict[str, list[str]]:
    """Each parameter field -> the operations that use it, e.g. "units" -> widen_layer and
    widen_mlp."""
    operations: dict[str, list[str]] = {}
    for table in (CHANGE_PARAMETER_FIELDS, CHANGE_OPTIONAL_PARAMETER_FIELDS):
        for operation, fields in table.items():
            for field in fields.values():
                operations.setdefault(field, []).append(operation)
    return operations


OPERATIONS_BY_PARAMETER_FIELD = _operations_by_parameter_field()
# The fields that name a CNN layer: offered the chosen model's layers, from
# selectors.subject_model_layer_names.
LAYER_NAME_FIELDS = ("layer", "after")


def layer_list_id(model_pk) -> str:
    """The id of the <datalist> holding a model's layer names on the change form."""
    return f"layers-of-model-{model_pk}"


class ChangeForm(VersionedModelForm):
    """An architecture change; the operation's parameters come from typed fields. Each
    parameter field says which operations use it (data-operations), so the page's script
    shows only the chosen operation's; only those are read and checked. `layer_names`
    ({model id: layer names}) are offered in the layer fields for the chosen model."""

    layer = forms.CharField(required=False, help_text="Widen or remove: the layer's name.")
    units = forms.IntegerField(required=False, min_value=1, help_text="Widen: units to add.")
    after = forms.CharField(required=False, help_text="Insert: the layer to insert after.")
    new_layer = OptionalJSONField(
        required=False,
        label="New layer",
        help_text='Insert: the layer as JSON, e.g. {"name": "conv3", "type": "conv2d", ...}.',
        widget=forms.Textarea(attrs={"rows": 3, "class": "code"}),
    )
    hp_name = forms.CharField(required=False, label="Hyperparameter")
    hp_value = forms.CharField(
        required=False, label="Value", help_text="A number, true/false or text."
    )
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), help_text="Manual changes."
    )
    # Transformer operations.
    block = forms.IntegerField(
        required=False, min_value=0, help_text="Transformer: the block (from 0) to change."
    )
    heads = forms.IntegerField(required=False, min_value=1, help_text="Add heads: how many.")
    after_block = forms.IntegerField(
        required=False, min_value=-1, label="After block",
        help_text="Insert a block: after this block (-1: before block 0).",
    )  # fmt: skip
    n_heads = forms.IntegerField(
        required=False, min_value=1, label="Heads", help_text="Insert a block: its heads."
    )
    d_mlp = forms.IntegerField(
        required=False, min_value=1, label="MLP width",
        help_text="Insert a block: its MLP neurons; empty for an attention-only block.",
    )  # fmt: skip

    class Meta:
        model = ArchitectureChange
        fields = [
            "insight", "target_model", "operation", "expected_metric", "expected_direction",
            "minimum_effect", "rationale",
        ]  # fmt: skip
        widgets = {"rationale": MARKDOWN_WIDGET}

    # The operation's parameters right after the operation, where the script reveals them.
    field_order = [
        "insight", "target_model", "operation", *OPERATIONS_BY_PARAMETER_FIELD,
        "expected_metric", "expected_direction", "minimum_effect", "rationale",
    ]  # fmt: skip

    def __init__(self, *args, layer_names: dict[int, list[str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        parameters = self.instance.parameters if self.instance.pk else {}
        operation = self.instance.operation
        for source, field in _parameter_fields(operation).items():
            if source in parameters:
                value = parameters[source]
                self.initial[field] = json.dumps(value) if field == "hp_value" else value
        for field, operations in OPERATIONS_BY_PARAMETER_FIELD.items():
            self.fields[field].widget.attrs["data-operations"] = " ".join(operations)
        self.layer_names = layer_names or {}
        self._offer_layers()

    def _offer_layers(self) -> None:
        """Point the layer fields at the chosen model's list of layers (the script moves
        them along when another model is chosen)."""
        chosen = str(self["target_model"].value() or "")
        for name in LAYER_NAME_FIELDS:
            attrs = self.fields[name].widget.attrs
            attrs.update({"data-layer-list": "true", "autocomplete": "off"})
            if chosen in {str(pk) for pk in self.layer_names}:
                attrs["list"] = layer_list_id(chosen)

    def layer_lists(self) -> list[tuple[str, list[str]]]:
        """(datalist id, layer names) for every model with known layers."""
        return [(layer_list_id(pk), names) for pk, names in self.layer_names.items()]

    def clean(self) -> dict:
        data = super().clean()
        operation = data.get("operation")
        self._drop_unused_parameter_errors(operation)
        fields = CHANGE_PARAMETER_FIELDS.get(operation, {})
        parameters = {}
        for source, field in fields.items():
            if field in self.errors:
                continue  # its own error (e.g. units -3) says what is wrong; one is enough
            value = data.get(field)
            if value in (None, ""):
                self.add_error(field, "This operation needs this field.")
                continue
            parameters[source] = _typed(value) if field == "hp_value" else value
        for source, field in CHANGE_OPTIONAL_PARAMETER_FIELDS.get(operation, {}).items():
            if data.get(field) is not None:
                parameters[source] = data[field]
        data["parameters"] = parameters
        return data

    def _drop_unused_parameter_errors(self, operation: str | None) -> None:
        # A field the chosen operation does not use is neither read nor shown, so what it
        # holds (left over from another operation) cannot stop the save.
        if operation not in CHANGE_PARAMETER_FIELDS:
            return  # no operation (its own error says so): every field still counts
        used = _parameter_fields(operation).values()
        for field in OPERATIONS_BY_PARAMETER_FIELD:
            if field not in used:
                self._errors.pop(field, None)

    def record_fields(self) -> dict:
        names = [*self.Meta.fields, "parameters"]
        return {name: self.cleaned_data[name] for name in names}

    def error_aliases(self) -> dict:
        return _parameter_fields(self.cleaned_data.get("operation"))


def _parameter_fields(operation: str | None) -> dict[str, str]:
    """The operation's parameters -> form fields, required and optional."""
    return {
        **CHANGE_PARAMETER_FIELDS.get(operation, {}),
        **CHANGE_OPTIONAL_PARAMETER_FIELDS.get(operation, {}),
    }


def _typed(text: str) -> Any:
    """ "3" -> 3, "0.01" -> 0.01, "true" -> True, anything else stays text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class OutcomeForm(forms.Form):
    """An outcome measured elsewhere, one value per seed for each arm; given `outcome`, the
    form starts from its values. The verdict is computed from the values (None) unless one is
    chosen, and the service refuses a chosen verdict the values do not give."""

    verdict = forms.TypedChoiceField(
        choices=[("", "Computed from the values"), *Outcome.Verdict.choices],
        required=False,
        empty_value=None,
        help_text="Computed from the 95% interval of guided change minus baseline, the "
        "change's expected direction and its smallest effect that matters, as for measured "
        "outcomes. A verdict chosen here must agree with the values.",
    )
    metric = forms.CharField(required=False, help_text="Defaults to the change's metric.")
    baseline_values = FloatListField()
    variant_values = FloatListField()
    control_values = FloatListField(required=False, help_text="The random control, if any.")
    notes = forms.CharField(required=False, widget=MARKDOWN_WIDGET)

    def __init__(self, *args, outcome: Outcome | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if outcome is not None:
            # The verdict starts as computed: edited values may give another one.
            self.initial.update(
                {name: getattr(outcome, name) for name in self.fields if name != "verdict"}
            )
            _, reason = outcome_verdict_reason(outcome)
            self.fields["verdict"].help_text += f" Now {reason}."


def _bounded_integer(setting: str, **kwargs) -> forms.IntegerField:
    """A whole-number field whose widget shows analysis.configs' bounds for `setting`; the
    bounds themselves are checked by the config cleaner (RunSettingsForm.clean)."""
    low, high = configs.BOUNDS[setting]
    return forms.IntegerField(widget=forms.NumberInput(attrs={"min": low, "max": high}), **kwargs)


def _dataset_size_field() -> forms.IntegerField:
    # One widget serves every dataset, so it spans them all; the chosen dataset's own bounds
    # are the cleaner's to check, and the help text names them.
    sizes = {
        name: configs.DATASET_BOUNDS[name][option]
        for name, option in configs.DATASET_SIZE_OPTION.items()
    }
    ranges = ", ".join(f"{name} {low} to {high}" for name, (low, high) in sizes.items())
    low, high = min(low for low, _ in sizes.values()), max(high for _, high in sizes.values())
    return forms.IntegerField(
        required=False,
        widget=forms.NumberInput(attrs={"min": low, "max": high}),
        help_text=f"Examples to generate or load: {ranges}.",
    )


def _dataset_config(name: str, size: int | None) -> dict:
    if size is None:
        return {"name": name}
    return {"name": name, configs.DATASET_SIZE_OPTION[name]: size}


class RunSettingsForm(forms.Form):
    """What every engine run trains on. The fields only parse; `clean` hands the settings to
    the run's cleaner in analysis.configs (the one the service, the API and run_analysis use)
    and shows each of its errors next to the field its key names (`CONFIG_FIELDS`, else the
    field of the same name)."""

    CONFIG_FIELDS = {
        "dataset": "dataset", "dataset.name": "dataset", "dataset.n": "dataset_size",
        "dataset.limit": "dataset_size", "train": "epochs", "train.epochs": "epochs",
    }  # fmt: skip
    config_clean: Callable[[dict], dict]

    dataset = forms.ChoiceField(
        choices=[(name, name) for name in configs.DATASET_NAMES], initial="shapes"
    )
    dataset_size = _dataset_size_field()
    epochs = _bounded_integer("train.epochs", initial=3)

    def clean(self) -> dict:
        data = super().clean()
        if not self.errors:
            try:
                self.config_clean(self.config())
            except ValidationError as error:
                form_add_service_errors(self, error, self.CONFIG_FIELDS)
        return data

    def config(self) -> dict:
        """Out: the run's config as the form's fields set it, before the cleaner's checks."""
        raise NotImplementedError

    def base_config(self) -> dict:
        data = self.cleaned_data
        return {
            "dataset": _dataset_config(data["dataset"], data.get("dataset_size")),
            "train": {"epochs": data["epochs"]},
        }

    # The run's own settings beside the dataset and training (the same name in its config).
    RUN_FIELDS: tuple[str, ...] = ()

    @classmethod
    def initial_from_config(cls, config: dict) -> dict:
        """In: a run's frozen config. Out: the form's initial values that request its
        settings again (epochs as the run trained, from its settings or its model's)."""
        settings = run_settings(config)
        initial = {name: settings[name] for name in ("dataset", "dataset_size", "epochs")}
        initial |= {name: config.get(name) for name in cls.RUN_FIELDS}
        return {name: value for name, value in initial.items() if value is not None}


CONTROL_POLICY_LABELS = {
    "same_operation": "The same operation at another place",
    "any_operation": "Any operation at any place, same parameter budget",
}


def _control_policy_field(initial: str, **kwargs) -> forms.ChoiceField:
    return forms.ChoiceField(
        choices=[(policy, CONTROL_POLICY_LABELS[policy])
                 for policy in configs.CHOICES["control_policy"]],
        initial=initial,
        label="Random control",
        help_text="Both controls add the guided change's parameters (within 5%).",
        **kwargs,
    )  # fmt: skip


class ExperimentForm(RunSettingsForm):
    config_clean = staticmethod(configs.experiment_config_clean)

    seeds = _bounded_integer(
        "seeds", initial=configs.DEFAULT_SEEDS, help_text="Training runs per arm."
    )
    # Optional: a form posted before CNN controls had a policy asks for the default one.
    control_policy = _control_policy_field(configs.DEFAULTS["control_policy"], required=False)
    control_seed = _bounded_integer(
        "control_seed",
        initial=configs.DEFAULTS["control_seed"],
        help_text="Draws the random control.",
    )

    def config(self) -> dict:
        data = self.cleaned_data
        policy = {"control_policy": data["control_policy"]} if data.get("control_policy") else {}
        return {**self.base_config(), "seeds": data["seeds"], "control_seed": data["control_seed"],
                **policy}  # fmt: skip


def _optional_bounded(bounds: tuple, help_text: str, **kwargs) -> forms.Field:
    """An optional field whose widget shows `bounds` (checked by the config cleaner): a
    whole number, or any number when the bounds are floats."""
    low, high = bounds
    field = (
        forms.IntegerField if isinstance(low, int) and isinstance(high, int) else forms.FloatField
    )
    attrs = {"min": low, "max": high} | ({} if field is forms.IntegerField else {"step": "any"})
    return field(required=False, widget=forms.NumberInput(attrs=attrs), help_text=help_text,
                 **kwargs)  # fmt: skip


TASK_BOUNDS = configs.SEQUENCE_TASK_BOUNDS
# The form fields that set each sequence task's options; left empty, an option follows the
# model (length: n_ctx) or the task's default. p is always the model's d_vocab - 1.
TASK_OPTION_FIELDS = {
    "induction": ("length", "segment", "eval_seed"),
    "modular-addition": ("train_fraction", "split_seed"),
}


class TransformerRunSettingsForm(forms.Form):
    """What every engine run on a transformer trains and measures on: a sequence task with its
    options instead of a dataset, training by steps (only when the model has no weights; the
    other training settings are the model's hyperparameters) and a probe set. The fields only
    parse; `clean` hands the settings to the run's cleaner in analysis.configs for the model's
    `spec` (the one the service, the API and run_analysis use) and shows each of its errors
    next to the field its key names (`CONFIG_FIELDS`, else the field of the same name)."""

    CONFIG_FIELDS = {
        "dataset": "task", "dataset.name": "task", "dataset.p": "task",
        **{f"dataset.{name}": name for names in TASK_OPTION_FIELDS.values() for name in names},
        "train": "steps", "train.steps": "steps",
    }  # fmt: skip

    task = forms.ChoiceField(
        choices=[(name, name) for name in configs.SEQUENCE_TASK_NAMES], initial="induction"
    )
    length = _optional_bounded(
        TASK_BOUNDS["induction"]["length"],
        "Induction: tokens per sequence; empty: the model's n_ctx.",
    )
    segment = _optional_bounded(
        TASK_BOUNDS["induction"]["segment"],
        "Induction: random tokens that then repeat; empty: length / 4.",
    )
    eval_seed = _optional_bounded(
        TASK_BOUNDS["induction"]["eval_seed"],
        "Induction: draws the held-out probe sequences; empty: 10000.",
        label="Probe seed",
    )
    train_fraction = _optional_bounded(
        TASK_BOUNDS["modular-addition"]["train_fraction"],
        "Modular addition: share of the p x p pairs trained on; empty: 0.3.",
    )
    split_seed = _optional_bounded(
        TASK_BOUNDS["modular-addition"]["split_seed"],
        "Modular addition: draws the training pairs; empty: 0.",
    )
    steps = forms.IntegerField(
        initial=configs.SEQUENCE_TRAIN_DEFAULTS["steps"],
        widget=forms.NumberInput(attrs={"min": configs.SEQUENCE_TRAIN_BOUNDS["steps"][0],
                                        "max": configs.SEQUENCE_TRAIN_BOUNDS["steps"][1]}),
        help_text="Training steps (per arm and seed in an experiment).",
    )  # fmt: skip
    probe_size = forms.IntegerField(
        initial=configs.DEFAULT_PROBE_SIZE,
        label="Probe sequences",
        widget=forms.NumberInput(attrs={"min": configs.PROBE_SIZE_BOUNDS[0],
                                        "max": configs.PROBE_SIZE_BOUNDS[1]}),
        help_text="Held-out sequences for the metrics and the head scores.",
    )  # fmt: skip
    # The run's own settings, beside the task's and training's (the same name in its config).
    RUN_FIELDS: tuple[str, ...] = ("probe_size",)

    def __init__(self, *args, spec: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.spec = spec

    def config_clean(self, config: dict) -> dict:
        """The run's cleaner for the model's spec; raises ValidationError keyed by setting."""
        raise NotImplementedError

    def clean(self) -> dict:
        data = super().clean()
        if not self.errors:
            try:
                self.config_clean(self.config())
            except ValidationError as error:
                form_add_service_errors(self, error, self.CONFIG_FIELDS)
        return data

    def config(self) -> dict:
        """Out: the run's config as the form's fields set it, before the cleaner's checks;
        only the chosen task's options, and only those given."""
        data = self.cleaned_data
        task = {"name": data["task"]}
        task |= {name: data[name] for name in TASK_OPTION_FIELDS[data["task"]]
                 if data.get(name) is not None}  # fmt: skip
        return {
            "dataset": task,
            "train": {"steps": data["steps"]},
            **{name: data[name] for name in self.RUN_FIELDS},
        }

    @classmethod
    def initial_from_config(cls, config: dict) -> dict:
        """In: a run's frozen config. Out: the form's initial values that request the same
        settings again (the training settings other than steps come from the model, whose
        measured spec can no longer change)."""
        dataset = config.get("dataset") or {}
        initial = {"task": dataset.get("name"), "steps": (config.get("train") or {}).get("steps")}
        initial |= {name: dataset.get(name) for names in TASK_OPTION_FIELDS.values()
                    for name in names}  # fmt: skip
        initial |= {name: config.get(name) for name in cls.RUN_FIELDS}
        return {name: value for name, value in initial.items() if value is not None}


class TransformerExperimentForm(TransformerRunSettingsForm):
    """A change experiment on a transformer: the task, training steps and probe set, the
    seeds, and the random control's policy (any operation by default)."""

    seeds = _bounded_integer(
        "seeds", initial=configs.DEFAULT_SEEDS, help_text="Training runs per arm."
    )
    control_policy = _control_policy_field(configs.TRANSFORMER_DEFAULT_CONTROL_POLICY)
    control_seed = _bounded_integer(
        "control_seed", initial=configs.DEFAULTS["control_seed"],
        help_text="Draws the random control.",
    )  # fmt: skip
    RUN_FIELDS = ("probe_size", "seeds", "control_policy", "control_seed")

    def config_clean(self, config: dict) -> dict:
        return configs.transformer_experiment_config_clean(config, spec=self.spec)

    @classmethod
    def initial_from_config(cls, config: dict) -> dict:
        initial = super().initial_from_config(config)
        if isinstance(initial.get("seeds"), list):
            initial["seeds"] = len(initial["seeds"])  # the frozen config lists them
        return initial


class TransformerProfileForm(TransformerRunSettingsForm):
    """Profiling of a transformer's heads and neurons on a sequence task."""

    seed = _bounded_integer(
        "seed", initial=configs.DEFAULTS["seed"],
        help_text="Seeds the training when the model has no weights.",
    )  # fmt: skip
    RUN_FIELDS = ("probe_size", "seed")

    def config_clean(self, config: dict) -> dict:
        return configs.transformer_run_config_clean(config, kind="profile", spec=self.spec)


class ProfileForm(RunSettingsForm):
    config_clean = staticmethod(configs.profile_config_clean)

    concept = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"maxlength": configs.BOUNDS["concept"][1]}),
        help_text="A class or attribute of the dataset, e.g. curvature or circle for shapes.",
    )

    RUN_FIELDS = ("concept",)

    def config(self) -> dict:
        return {**self.base_config(), "concept": self.cleaned_data["concept"]}


ABLATION_MODE_LABELS = {"zero": "Zero the units", "mean": "Mean-ablate"}


class AblationForm(RunSettingsForm):
    config_clean = staticmethod(configs.ablation_config_clean)

    mode = forms.ChoiceField(
        choices=[(mode, ABLATION_MODE_LABELS[mode]) for mode in configs.CHOICES["mode"]],
        initial=configs.DEFAULTS["mode"],
    )
    random_sets = _bounded_integer("random_sets", initial=configs.DEFAULTS["random_sets"])
    RUN_FIELDS = ("mode", "random_sets")

    def config(self) -> dict:
        data = self.cleaned_data
        return {**self.base_config(), "mode": data["mode"], "random_sets": data["random_sets"]}


class TransformerAblationForm(TransformerProfileForm):
    """Ablation of a finding's heads or neurons on a transformer, against random sets of the
    same size in the same layer."""

    mode = forms.ChoiceField(
        choices=[(mode, ABLATION_MODE_LABELS[mode]) for mode in configs.CHOICES["mode"]],
        initial=configs.DEFAULTS["mode"],
    )
    random_sets = _bounded_integer("random_sets", initial=configs.DEFAULTS["random_sets"])
    RUN_FIELDS = ("probe_size", "seed", "mode", "random_sets")

    def config_clean(self, config: dict) -> dict:
        return configs.transformer_run_config_clean(config, kind="ablation", spec=self.spec)


class InvitationForm(forms.Form):
    researcher = forms.ModelChoiceField(
        queryset=Researcher.objects.filter(anonymised_at__isnull=True),
        help_text="Anonymised researchers are not invited.",
    )
    valid_days = forms.IntegerField(
        min_value=1, max_value=MAX_VALID_DAYS, initial=DEFAULT_VALID_DAYS, label="Valid for days"
    )


def today() -> datetime.date:
    return timezone.localdate()


class ExchangeImportForm(forms.Form):
    """A REFI-QDA file to import (kb.services.exchange): a codebook (.qdc) or a project
    (.qdpx), told apart by the file's extension."""

    KINDS = {".qdc": "codebook", ".qdpx": "project"}

    file = forms.FileField(
        help_text="A REFI-QDA codebook (.qdc) or project (.qdpx) exported from MAXQDA, ATLAS.ti, "
        "NVivo, QualCoder, Taguette or Insight KB."
    )
    researcher = forms.ModelChoiceField(
        queryset=Researcher.objects.filter(anonymised_at__isnull=True),
        required=False,
        label="Interviewee (projects)",
        help_text="Whose interviews a project's sources are when their case names no pseudonym "
        "known here.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        extension = "." + upload.name.rsplit(".", 1)[-1].lower() if "." in upload.name else ""
        if extension not in self.KINDS:
            raise ValidationError(f"Upload a .qdc or .qdpx file; “{upload.name}” is neither.")
        self.kind = self.KINDS[extension]
        return upload


class ThemeStatisticsScopeForm(forms.Form):
    """Which coding the theme statistics count (?coder=<user id> or ?version=consensus), as
    the API's theme-prevalence endpoint takes them."""

    coder = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(coded_highlights__isnull=False).distinct(),
        required=False,
        empty_label="Every coder",
        help_text="Count only this coder's highlights.",
    )
    version = forms.ChoiceField(
        choices=[("", "The coders' highlights"), ("consensus", "The consensus version")],
        required=False,
    )

    def clean(self):
        data = super().clean()
        try:
            theme_scope_validate(coder=data.get("coder"), version=data.get("version"))
        except ValidationError as error:
            self.add_error(None, error)
        return data


class CodingRoundForm(forms.Form):
    """A new round: its name, the interviews to code, the coders (users who may code)."""

    name = forms.CharField(max_length=120)
    interviews = forms.ModelMultipleChoiceField(
        queryset=Interview.objects.select_related("researcher").order_by("-conducted_on", "-id"),
        widget=forms.CheckboxSelectMultiple,
    )
    coders = forms.ModelMultipleChoiceField(
        queryset=selectors.coder_candidates(),
        widget=forms.CheckboxSelectMultiple,
        help_text="At least two. Each codes these interviews blind until they mark their part "
        "done or the round is closed.",
    )
