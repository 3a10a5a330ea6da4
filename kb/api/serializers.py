"""Representations (read: what `RowBuilder` fills; the schema) and inputs (write: validated
here for types and ids, then handed to a service, which validates the rules)."""

from collections.abc import Mapping

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from rest_framework import serializers
from rest_framework.fields import empty

from analysis.models import AnalysisJob, AnalysisRun
from kb import transcripts
from kb.api.fields import LinkField, SafeJSONField, TextListField, UnitIndicesField
from kb.api.mixins import RefuseUnknownFieldsMixin
from kb.models import (
    Answer,
    ArchitectureChange,
    Event,
    Finding,
    Highlight,
    Insight,
    Interview,
    InvitationState,
    Outcome,
    Question,
    Researcher,
    Stance,
    SubjectModel,
    Survey,
    SurveyInvitation,
    Theme,
)
from kb.models.people import CONSENT_FIELDS
from kb.models.subjects import CONFIDENCE_IS_PROBABILITY
from kb.services.interviews import QUESTION_MOVES
from kb.services.invitations import DEFAULT_VALID_DAYS, MAX_VALID_DAYS

MAX_ID = 2**63 - 1  # the largest primary key; bigger ids would overflow the database's integer


class KbSerializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    pass


class KbModelSerializer(RefuseUnknownFieldsMixin, serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.JSONField: SafeJSONField,
    }


def version_input_field() -> serializers.IntegerField:
    """The version a PATCH was made on, for clients that send it in the body rather than in
    If-Match (kb.api.mixins)."""
    return serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**31 - 1,
        help_text="The `version` of the representation this change was made on. A record "
        "saved since answers 409 and nothing is written. Send this or an If-Match header "
        "with the ETag: a PATCH with neither answers 428.",
    )


# --- people, surveys, interviews ------------------------------------------------------------


class ResearcherSerializer(KbModelSerializer):
    url = LinkField("api:researcher-detail")

    class Meta:
        model = Researcher
        fields = [
            "id", "url", "pseudonym", "full_name", "affiliation", "role", "seniority",
            "research_area", "consent_given", "consent_date", "consent_scope", "contact_email",
            "anonymised_at", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["anonymised_at"]

    def to_internal_value(self, data):
        """Field errors and the consent rule's error together, each under its field, as the
        page's form shows them (the service checks the rule again on what it saves)."""
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as error:
            if isinstance(error.detail, dict):
                consent = self._consent_errors(data)
                raise serializers.ValidationError({**consent, **error.detail}) from None
            raise

    def _consent_errors(self, data) -> dict[str, list[str]]:
        """The consent rule on the given consent fields (the record's own where a PATCH leaves
        them out); none when a consent field has an error of its own."""
        if not isinstance(data, Mapping):
            return {}
        values = {name: getattr(self.instance, name) for name in CONSENT_FIELDS if self.instance}
        for name in CONSENT_FIELDS:
            if name in data:
                try:
                    values[name] = self.fields[name].run_validation(data[name])
                except serializers.ValidationError:
                    return {}
        try:
            Researcher(**values).consent_validate()
        except DjangoValidationError as error:
            return error.message_dict
        return {}


class QuestionInputSerializer(KbSerializer):
    text = serializers.CharField()
    kind = serializers.ChoiceField(Question.Kind.choices)
    choices = TextListField(required=False)
    required = serializers.BooleanField(required=False, default=True)


class QuestionSummarySerializer(KbSerializer):
    id = serializers.IntegerField()
    position = serializers.IntegerField()
    text = serializers.CharField()
    kind = serializers.ChoiceField(Question.Kind.choices)


class SurveySerializer(KbModelSerializer):
    url = LinkField("api:survey-detail")
    questions = QuestionSummarySerializer(many=True, read_only=True)

    class Meta:
        model = Survey
        fields = ["id", "url", "title", "description", "created_at", "questions"]


class SurveyCreateSerializer(KbModelSerializer):
    questions = QuestionInputSerializer(many=True, required=False, default=list)

    class Meta:
        model = Survey
        fields = ["title", "description", "questions"]


class QuestionSerializer(KbModelSerializer):
    url = LinkField("api:question-detail")
    survey_url = LinkField("api:survey-detail", "survey")
    choices = TextListField(required=False)

    class Meta:
        model = Question
        fields = ["id", "url", "survey", "survey_url", "position", "text", "kind", "choices",
                  "required"]  # fmt: skip


class QuestionMoveSerializer(KbSerializer):
    direction = serializers.ChoiceField(
        list(QUESTION_MOVES), help_text="Swap with the question before (up) or after (down) it."
    )


class QuestionCreateSerializer(QuestionSerializer):
    class Meta(QuestionSerializer.Meta):
        fields = ["survey", "position", "text", "kind", "choices", "required"]
        extra_kwargs = {
            "position": {"required": False, "help_text": "Default: after the last question."}
        }
        # DRF's (survey, position) check would make position required; the service's
        # full_clean() refuses a position already taken all the same.
        validators = []


class QuestionUpdateSerializer(KbModelSerializer):
    choices = TextListField(required=False)

    class Meta:
        model = Question
        fields = ["position", "text", "kind", "choices", "required"]


class InvitationSerializer(KbModelSerializer):
    """A survey link, without its token: only the digest is stored, and the link itself is
    in the answer to the POST that made it."""

    url = LinkField("api:surveyinvitation-detail")
    survey_url = LinkField("api:survey-detail", "survey")
    researcher_url = LinkField("api:researcher-detail", "researcher")
    interview_url = LinkField("api:interview-detail", "interview", allow_null=True)
    state = serializers.ChoiceField(
        InvitationState.choices,
        read_only=True,
        help_text="waiting: the link works; answered: it made `interview`; expired: its time "
        "ran out or it was withdrawn.",
    )

    class Meta:
        model = SurveyInvitation
        fields = ["id", "url", "survey", "survey_url", "researcher", "researcher_url", "state",
                  "expires_at", "used_at", "interview", "interview_url", "created_at"]  # fmt: skip
        read_only_fields = fields


class InvitationCreateSerializer(KbModelSerializer):
    valid_days = serializers.IntegerField(
        min_value=1, max_value=MAX_VALID_DAYS, default=DEFAULT_VALID_DAYS,
        help_text="How many days the link works.",
    )  # fmt: skip

    class Meta:
        model = SurveyInvitation
        fields = ["survey", "researcher", "valid_days"]


class InvitationCreatedSerializer(InvitationSerializer):
    link = serializers.URLField(
        read_only=True,
        help_text="The single-use link to send the researcher. It is shown this once: only "
        "a digest of it is stored.",
    )

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "link"]
        read_only_fields = fields


def answer_value_problem(kind: str | None, value) -> str | None:
    """What is wrong with the shape of a raw answer value for a question kind, if anything;
    the services check the value itself (range, offered choices)."""
    if value is None or kind is None:
        return None
    if kind == Question.Kind.LIKERT:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "A Likert answer is a whole number from 1 to 5."
    if kind in Question.CHOICE_KINDS:
        ok = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        )
        return None if ok else "A choice answer is a choice or a list of choices."
    return None if isinstance(value, str) else "A free-text answer is a string."


class InterviewSerializer(KbModelSerializer):
    url = LinkField("api:interview-detail")
    researcher_url = LinkField("api:researcher-detail", "researcher")
    survey_url = LinkField("api:survey-detail", "survey", allow_null=True)

    class Meta:
        model = Interview
        fields = [
            "id", "url", "researcher", "researcher_url", "interviewer", "conducted_on",
            "survey", "survey_url", "transcript", "summary", "status", "created_at",
            "updated_at",
        ]  # fmt: skip


class InterviewCreateSerializer(InterviewSerializer):
    answers = serializers.DictField(
        child=SafeJSONField(allow_null=True),
        required=False,
        help_text="Question id to the answer's value (text, 1-5, or selected choices).",
    )

    class Meta(InterviewSerializer.Meta):
        fields = ["researcher", "interviewer", "conducted_on", "survey", "transcript",
                  "summary", "status", "answers"]  # fmt: skip

    def validate_answers(self, value: dict) -> dict:
        if not all(key.isdigit() and len(key) < 12 for key in value):
            raise serializers.ValidationError("Keys must be question ids.")
        answers = {int(key): answer for key, answer in value.items()}
        kinds = dict(Question.objects.filter(pk__in=answers).values_list("pk", "kind"))
        problems = [
            f"Question {question_id}: {problem}"
            for question_id, answer in answers.items()
            if (problem := answer_value_problem(kinds.get(question_id), answer))
        ]
        if problems:
            raise serializers.ValidationError(problems)
        return answers


class InterviewUpdateSerializer(KbModelSerializer):
    class Meta:
        model = Interview
        fields = ["interviewer", "conducted_on", "transcript", "summary", "status"]


class InterviewTranscriptUploadSerializer(KbSerializer):
    """A transcript file for the interview in the context's `interview`; valid data is the
    `transcript` it becomes (kb.transcripts reads the file)."""

    transcript_file = serializers.FileField(
        help_text="A .txt, .docx, .vtt or .srt file of at most TRANSCRIPT_MAX_UPLOAD_SIZE "
        "bytes (5 MiB by default), UTF-8 text. Speaker turns (“Name: text” lines, WebVTT "
        "voices, bold names opening .docx paragraphs) are kept, one paragraph per turn."
    )
    interviewee_speaker = serializers.CharField(
        required=False,
        max_length=80,
        help_text="The speaker, as the file names them, who is the interviewee: their turns "
        "are labelled with the researcher's pseudonym instead, so their name is not stored.",
    )

    def validate(self, data: dict) -> dict:
        try:
            transcript = transcripts.transcript_from_uploaded_file(data["transcript_file"])
        except transcripts.TranscriptFileRefused as error:
            raise serializers.ValidationError({"transcript_file": error.messages}) from None
        speaker = data.get("interviewee_speaker")
        if speaker:
            pseudonym = self.context["interview"].researcher.pseudonym
            try:
                transcript = transcript.with_speaker_renamed(speaker, pseudonym)
            except transcripts.TranscriptFileRefused as error:
                raise serializers.ValidationError({"interviewee_speaker": error.messages}) from None
        return {"transcript": transcript.text}


class AnswerSerializer(KbModelSerializer):
    url = LinkField("api:answer-detail")
    interview_url = LinkField("api:interview-detail", "interview")
    question_url = LinkField("api:question-detail", "question")
    selected_choices = TextListField(required=False)

    class Meta:
        model = Answer
        fields = ["id", "url", "interview", "interview_url", "question", "question_url", "text",
                  "likert", "selected_choices"]  # fmt: skip


class AnswerCreateSerializer(KbSerializer):
    interview = serializers.PrimaryKeyRelatedField(queryset=Interview.objects.all())
    question = serializers.PrimaryKeyRelatedField(queryset=Question.objects.all())
    value = SafeJSONField(allow_null=True, help_text="Text, a 1-5 value, or selected choices.")

    def validate(self, data: dict) -> dict:
        problem = answer_value_problem(data["question"].kind, data["value"])
        if problem:
            raise serializers.ValidationError({"value": [problem]})
        return data


class AnswerUpdateSerializer(KbModelSerializer):
    selected_choices = TextListField(required=False)

    class Meta:
        model = Answer
        fields = ["text", "likert", "selected_choices"]


# --- codebook -----------------------------------------------------------------------------


class ThemeSerializer(KbModelSerializer):
    url = LinkField("api:theme-detail")
    colour = serializers.RegexField(
        r"^#[0-9a-fA-F]{6}$", required=False, help_text="Hex colour, #rrggbb."
    )
    parent_url = LinkField("api:theme-detail", "parent", allow_null=True)

    class Meta:
        model = Theme
        fields = ["id", "url", "name", "description", "parent", "parent_url", "colour"]
        # The database constraints (siblings, roots) are checked by the service's full_clean.
        validators = []


class HighlightSerializer(KbModelSerializer):
    url = LinkField("api:highlight-detail")
    interview_url = LinkField("api:interview-detail", "interview")
    themes = serializers.PrimaryKeyRelatedField(queryset=Theme.objects.all(), many=True)

    class Meta:
        model = Highlight
        fields = ["id", "url", "interview", "interview_url", "source", "answer", "start", "end",
                  "quote", "themes", "note", "coder", "is_consensus", "created_by",
                  "created_at"]  # fmt: skip
        read_only_fields = ["source", "coder", "is_consensus", "created_by"]


class HighlightUpdateSerializer(KbModelSerializer):
    themes = serializers.PrimaryKeyRelatedField(
        queryset=Theme.objects.all(), many=True, required=False
    )

    class Meta:
        model = Highlight
        fields = ["note", "themes"]


# --- models under study and findings ------------------------------------------------------


class SubjectModelSerializer(KbModelSerializer):
    url = LinkField("api:subjectmodel-detail")

    class Meta:
        model = SubjectModel
        fields = ["id", "url", "name", "family", "task", "dataset", "kind", "architecture_spec",
                  "weights_sha256", "source", "created_at"]  # fmt: skip
        read_only_fields = ["weights_sha256"]


class SubjectModelCreateSerializer(SubjectModelSerializer):
    weights = serializers.FileField(
        required=False,
        write_only=True,
        help_text="A safetensors file (multipart/form-data; `architecture_spec` then goes as "
        "a JSON string). Weights are set only when a model is registered.",
    )

    class Meta(SubjectModelSerializer.Meta):
        fields = ["name", "family", "task", "dataset", "kind", "architecture_spec", "weights",
                  "source"]  # fmt: skip


class SubjectModelUpdateSerializer(KbModelSerializer):
    class Meta:
        model = SubjectModel
        fields = ["name", "family", "task", "dataset", "architecture_spec", "source"]

    refused_field_messages = {
        "weights": "Weights are set when a model is registered; register a new model for "
        "other weights, so every result keeps the weights it used."
    }


class FindingSerializer(KbModelSerializer):
    url = LinkField("api:finding-detail")
    subject_model_url = LinkField("api:subjectmodel-detail", "subject_model")
    unit_indices = UnitIndicesField(required=False)
    evidence_runs = serializers.PrimaryKeyRelatedField(
        queryset=AnalysisRun.objects.all(), many=True, required=False
    )

    class Meta:
        model = Finding
        fields = [
            "id", "url", "subject_model", "subject_model_url", "title", "description", "kind",
            "layer_name", "unit_indices", "concept", "evidence_runs", "status", "confidence",
            "created_at", "updated_at", "version",
        ]  # fmt: skip
        # The bounds come from the model's validators; their message with them.
        extra_kwargs = {
            "confidence": {
                "error_messages": {
                    "min_value": CONFIDENCE_IS_PROBABILITY,
                    "max_value": CONFIDENCE_IS_PROBABILITY,
                }
            }
        }


class FindingUpdateSerializer(KbModelSerializer):
    unit_indices = UnitIndicesField(required=False)
    version = version_input_field()

    class Meta:
        model = Finding
        fields = ["title", "description", "kind", "layer_name", "unit_indices", "concept",
                  "status", "confidence", "version"]  # fmt: skip
        extra_kwargs = FindingSerializer.Meta.extra_kwargs


# --- insights, changes, outcomes ----------------------------------------------------------


class OutcomeSummarySerializer(KbSerializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    verdict = serializers.ChoiceField(Outcome.Verdict.choices)
    effect = serializers.FloatField()
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)
    effect_vs_control = serializers.FloatField(allow_null=True)
    recorded_at = serializers.DateTimeField()


class ChangeSummarySerializer(KbSerializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    operation = serializers.ChoiceField(ArchitectureChange.Operation.choices)
    status = serializers.ChoiceField(ArchitectureChange.Status.choices)
    target_model = serializers.IntegerField()
    latest_outcome = OutcomeSummarySerializer(allow_null=True)


class FindingLinkSerializer(KbSerializer):
    finding = serializers.IntegerField()
    url = serializers.URLField()
    title = serializers.CharField()
    stance = serializers.ChoiceField(Stance.choices)


class HighlightLinkSerializer(KbSerializer):
    highlight = serializers.IntegerField()
    url = serializers.URLField()
    stance = serializers.ChoiceField(Stance.choices)


class InsightSerializer(KbModelSerializer):
    url = LinkField("api:insight-detail")
    findings = FindingLinkSerializer(many=True, read_only=True)
    highlights = HighlightLinkSerializer(
        many=True,
        read_only=True,
        allow_null=True,
        help_text="Supporting or contradicting quotes; null for roles that may not see quotes.",
    )
    changes = ChangeSummarySerializer(many=True, read_only=True)

    class Meta:
        model = Insight
        fields = [
            "id", "url", "title", "statement", "understanding_level", "relevance", "status",
            "created_by", "created_at", "updated_at", "version", "findings", "highlights",
            "changes",
        ]  # fmt: skip
        read_only_fields = ["created_by"]


# An item of a list in a request, validated whole even inside a PATCH: the update is partial
# for the record's own fields, but each link it adds needs all of its own (required ones
# present, defaults filled in).
class WholeItemSerializer(KbSerializer):
    def validate(self, attrs: dict) -> dict:
        missing = {}
        for name, field in self.fields.items():
            if name in attrs or field.read_only:
                continue
            if field.required:
                missing[name] = [field.error_messages["required"]]
            elif field.default is not empty:  # get_default() gives nothing while partial
                attrs[name] = field.default() if callable(field.default) else field.default
        if missing:
            raise serializers.ValidationError(missing)
        return attrs


class FindingLinkInputSerializer(WholeItemSerializer):
    finding = serializers.PrimaryKeyRelatedField(queryset=Finding.objects.all())
    stance = serializers.ChoiceField(Stance.choices, default=Stance.SUPPORTS)


class HighlightLinkInputSerializer(WholeItemSerializer):
    highlight = serializers.PrimaryKeyRelatedField(queryset=Highlight.objects.all())
    stance = serializers.ChoiceField(Stance.choices, default=Stance.SUPPORTS)


class InsightCreateSerializer(KbModelSerializer):
    findings = FindingLinkInputSerializer(many=True, required=False, default=list)
    highlights = HighlightLinkInputSerializer(many=True, required=False, default=list)

    class Meta:
        model = Insight
        fields = ["title", "statement", "understanding_level", "relevance", "status",
                  "findings", "highlights"]  # fmt: skip


class InsightUnlinkSerializer(KbSerializer):
    findings = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False, default=list,
        help_text="Ids of linked findings to remove from the evidence.",
    )  # fmt: skip
    highlights = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False, default=list,
        help_text="Ids of linked quotes (highlights) to remove from the evidence.",
    )  # fmt: skip

    def validate(self, attrs):
        if not attrs["findings"] and not attrs["highlights"]:
            raise serializers.ValidationError("Name at least one finding or highlight to unlink.")
        return attrs


class InsightUpdateSerializer(KbModelSerializer):
    findings = FindingLinkInputSerializer(
        many=True,
        required=False,
        help_text="More findings to link; ones already linked keep their stance.",
    )
    highlights = HighlightLinkInputSerializer(
        many=True,
        required=False,
        help_text="More quotes to link; ones already linked keep their stance.",
    )
    version = version_input_field()

    class Meta:
        model = Insight
        fields = ["title", "statement", "understanding_level", "relevance", "status",
                  "findings", "highlights", "version"]  # fmt: skip


class ChangeSerializer(KbModelSerializer):
    url = LinkField("api:architecturechange-detail")
    insight_url = LinkField("api:insight-detail", "insight")
    target_model_url = LinkField("api:subjectmodel-detail", "target_model")
    latest_outcome = OutcomeSummarySerializer(read_only=True, allow_null=True)

    class Meta:
        model = ArchitectureChange
        fields = [
            "id", "url", "insight", "insight_url", "target_model", "target_model_url",
            "operation", "parameters", "rationale", "expected_metric", "expected_direction",
            "minimum_effect", "status", "created_at", "updated_at", "version", "latest_outcome",
        ]  # fmt: skip
        read_only_fields = ["status"]


class ChangeUpdateSerializer(KbModelSerializer):
    version = version_input_field()

    class Meta:
        model = ArchitectureChange
        fields = ["operation", "parameters", "rationale", "expected_metric",
                  "expected_direction", "minimum_effect", "version"]  # fmt: skip


class OutcomeSettingsSerializer(KbSerializer):
    dataset = serializers.CharField(allow_null=True)
    dataset_size = serializers.IntegerField(allow_null=True, help_text="null: the whole dataset.")
    epochs = serializers.IntegerField()
    seeds = serializers.ListField(child=serializers.IntegerField())


class OutcomeSerializer(KbModelSerializer):
    url = LinkField("api:outcome-detail")
    change_url = LinkField("api:architecturechange-detail", "change")
    analysis_run_url = LinkField("api:analysisrun-detail", "analysis_run", allow_null=True)
    settings = OutcomeSettingsSerializer(
        read_only=True, allow_null=True,
        help_text="What a measured outcome trained on, from its run's frozen config; null for "
        "an outcome entered by hand.",
    )  # fmt: skip

    class Meta:
        model = Outcome
        fields = [
            "id", "url", "change", "change_url", "metric", "baseline_values", "variant_values",
            "control_values", "effect", "ci_low", "ci_high", "p_value", "effect_vs_control",
            "control_ci_low", "control_ci_high", "verdict", "source", "analysis_run",
            "analysis_run_url", "settings", "notes", "recorded_at",
        ]  # fmt: skip


class MetricValueField(serializers.FloatField):
    """One seed's metric value; bounded so that means and intervals stay finite."""

    def __init__(self, **kwargs) -> None:
        super().__init__(min_value=-1e9, max_value=1e9, **kwargs)


class OutcomeCreateSerializer(KbSerializer):
    """An outcome measured elsewhere; effect, interval and p-value are computed."""

    change = serializers.PrimaryKeyRelatedField(queryset=ArchitectureChange.objects.all())
    verdict = serializers.ChoiceField(
        Outcome.Verdict.choices, required=False, allow_null=True, default=None,
        help_text="Computed from the values when left out (the measured outcomes' rule); a "
        "verdict the values do not give answers 400 on `verdict` with the reason.",
    )  # fmt: skip
    baseline_values = serializers.ListField(child=MetricValueField(), min_length=1)
    variant_values = serializers.ListField(child=MetricValueField(), min_length=1)
    control_values = serializers.ListField(child=MetricValueField(), required=False, default=list)
    metric = serializers.CharField(max_length=64, required=False)
    notes = serializers.CharField(required=False, allow_blank=True, default="")


class OutcomeUpdateSerializer(KbModelSerializer):
    class Meta:
        model = Outcome
        fields = ["notes"]


# --- runs and events ----------------------------------------------------------------------


class JobSummarySerializer(KbSerializer):
    key = serializers.CharField()
    status = serializers.ChoiceField(AnalysisJob.Status.choices)
    progress = serializers.FloatField()
    attempts = serializers.IntegerField()
    environment = serializers.DictField(
        help_text="Where the job ran: torch, numpy, python, device, threads, code_revision, "
        "host; empty until it finished."
    )


class RunSerializer(KbModelSerializer):
    url = LinkField("api:analysisrun-detail")
    subject_model_url = LinkField("api:subjectmodel-detail", "subject_model", allow_null=True)
    finding_url = LinkField("api:finding-detail", "finding", allow_null=True)
    change_url = LinkField("api:architecturechange-detail", "change", allow_null=True)
    figures = serializers.DictField(
        child=serializers.URLField(), read_only=True, help_text="Figure name to its URL."
    )
    jobs = JobSummarySerializer(many=True, read_only=True)
    outcome = serializers.IntegerField(read_only=True, allow_null=True)
    reproduces_url = LinkField("api:analysisrun-detail", "reproduces", allow_null=True)

    class Meta:
        model = AnalysisRun
        fields = [
            "id", "url", "kind", "subject_model", "subject_model_url", "finding", "finding_url",
            "change", "change_url", "config", "config_digest", "reproduces", "reproduces_url",
            "status", "progress_percent", "progress_message", "result", "error", "failure",
            "environment", "attempts", "requested_by", "created_at", "dispatched_at",
            "started_at", "finished_at", "figures", "jobs", "outcome",
        ]  # fmt: skip
        read_only_fields = fields
        extra_kwargs = {
            "config": {"help_text": "Everything the run measures, frozen when it was requested: "
                       "settings, model spec and weights digest, the change, each arm's spec, "
                       "metric, direction, minimum effect."},
            "environment": {"help_text": "Each distinct environment its jobs ran in, with "
                            "the jobs (filled when the run finishes)."},
            "failure": {"help_text": "Why a failed run failed: bad_request (retrying cannot "
                        "help), internal (a bug; see the worker log) or time_limit."},
            "dispatched_at": {"help_text": "When the task queue took the run's jobs. Null on "
                              "a queued run: the queue was not answering when it was "
                              "requested; the run is saved and starts by itself once the "
                              "queue is back."},
        }  # fmt: skip


class RunRequestSerializer(KbSerializer):
    config = SafeJSONField(
        required=False,
        default=dict,
        help_text="Dataset or sequence task, training settings, seeds ...; for a change "
        "experiment also control_policy: same_operation (a CNN's default) or any_operation "
        "(a transformer's default), how the budget-matched random control is drawn.",
    )

    unknown_field_message = "Unknown field; run settings go inside `config`."

    def validate_config(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        return value


class RunAcceptedSerializer(KbSerializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    status = serializers.ChoiceField(AnalysisRun.Status.choices)
    waiting_for_queue = serializers.BooleanField(
        help_text="True when the task queue was not answering: the run is saved and starts "
        "by itself once the queue is back."
    )


class EventSerializer(KbModelSerializer):
    target_type = serializers.CharField(read_only=True, help_text="e.g. kb.insight")

    class Meta:
        model = Event
        fields = ["id", "action", "target_type", "target_id", "target_label", "changes",
                  "actor", "created_at"]  # fmt: skip
        read_only_fields = fields
