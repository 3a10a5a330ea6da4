"""Guided-search studies over the API: request one, follow it round by round, cancel and
resume it. Thin like the other viewsets: the writes call analysis.studies, the reads the study
selectors; a study is a run, so the run permissions apply to it."""

import django_filters as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from analysis.engine.study_report import json_safe
from analysis.models import AnalysisRun, Study, StudyRound
from analysis.studies import study_cancel, study_request, study_resume
from analysis.study_selectors import study_progress, study_rounds, study_trajectory
from kb.api.fields import LinkField, SafeJSONField
from kb.api.rows import url_template
from kb.api.serializers import KbModelSerializer, KbSerializer
from kb.api.views import KbReadViewSet
from kb.filters import date_time_range
from kb.models import SubjectModel

VIEW_RUNS = ["analysis.view_analysisrun"]
# Who may request a run may request a study; who may cancel or retry one, cancel or resume it.
# Requesting a study reads the model it studies, as profiling a model does.
REQUEST_RUNS = ["analysis.add_analysisrun", "kb.view_subjectmodel"]
STEER_RUNS = ["analysis.change_analysisrun"]


# --- representation ------------------------------------------------------------------------


class StudyRequestSerializer(KbSerializer):
    model = serializers.PrimaryKeyRelatedField(
        queryset=SubjectModel.objects.all(), help_text="The built-in model the study starts from."
    )
    settings = SafeJSONField(
        required=False,
        default=dict,
        help_text="The study's design: `seeds` (a count, at least 3, or a list), `rounds` "
        "(1-10, default 4), `budget_fraction` (0 < f <= 1, default 0.10), `rule`, `tracks` "
        "(guided and at least one of random and uniform), `metric`, `direction`, "
        "`random_seed`, `tolerance`, `level`. A CNN or MLP also takes `concept` (required), "
        "and `dataset` and `train` as for its experiments. A transformer takes instead "
        '`dataset` (a sequence task, e.g. {"name": "induction", "length", '
        '"segment"}; default induction fitted to the model), `train` ({"steps"}), '
        "`probe_size`, `head_role` (previous_token, induction or duplicate_token; default "
        "induction) and `threshold` (0-1, default 0.5); its metric defaults to test_loss.",
    )

    unknown_field_message = "Unknown field; study settings go inside `settings`."

    def validate_settings(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        return value


class StudyRoundSerializer(KbSerializer):
    index = serializers.IntegerField(help_text="0 is the base model; rounds count from 1.")
    track = serializers.ChoiceField(StudyRound.Track.choices)
    spec = serializers.DictField(help_text="The candidate's architecture spec.")
    plan = serializers.DictField(
        help_text="How the track chose its candidate: the rule or policy, its inputs and "
        "choice; `error` and `field_errors` when the track sat the round out."
    )
    parameters = serializers.IntegerField()
    params_added = serializers.IntegerField()
    values = serializers.ListField(
        child=serializers.FloatField(allow_null=True),
        allow_null=True,
        help_text="The metric per seed, in the study's seed order; null until decided.",
    )
    summary = serializers.DictField(
        allow_null=True, help_text="n, mean, ci_low, ci_high (null where undefined)."
    )
    mechanism = serializers.DictField(allow_null=True)
    decision = serializers.DictField(
        allow_null=True, help_text="The keep rule applied to this candidate."
    )
    kept = serializers.BooleanField(allow_null=True)
    finding = serializers.IntegerField(allow_null=True)
    finding_url = serializers.URLField(allow_null=True)
    insight = serializers.IntegerField(allow_null=True)
    insight_url = serializers.URLField(allow_null=True)
    change = serializers.IntegerField(allow_null=True)
    change_url = serializers.URLField(allow_null=True)
    outcome = serializers.IntegerField(allow_null=True)
    outcome_url = serializers.URLField(allow_null=True)
    created_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)


class StudySerializer(KbModelSerializer):
    url = LinkField("api:study-detail")
    run_url = LinkField("api:analysisrun-detail")
    subject_model_url = LinkField("api:subjectmodel-detail", "subject_model")
    waiting_for_queue = serializers.BooleanField(
        read_only=True,
        help_text="True while the task queue has not taken the study's jobs (it was not "
        "answering); the study is saved and starts by itself once the queue is back.",
    )

    class Meta:
        model = Study
        fields = [
            "id", "url", "run_url", "subject_model", "subject_model_url", "config",
            "config_digest", "status", "progress_percent", "progress_message", "result", "error",
            "failure", "attempts", "requested_by", "created_at", "dispatched_at", "started_at",
            "finished_at", "waiting_for_queue",
        ]  # fmt: skip
        read_only_fields = fields
        extra_kwargs = {
            "config": {"help_text": "The study's design, frozen when it was requested: "
                       "settings, the base model's spec and weights digest, seeds, rounds, "
                       "tracks, the guided rule, budget fraction, metric and keep rule."},
            "result": {"help_text": "The final report once the study succeeded: per-track "
                       "final values, guided against random and against uniform (paired by "
                       "seed: difference, interval, p-value, effect size, verdict), the guided "
                       "win rate with its Wilson interval, and the trajectory. Undefined "
                       "numbers are null."},
        }  # fmt: skip


class StudyDetailSerializer(StudySerializer):
    progress = serializers.DictField(
        read_only=True,
        help_text="`round`: the earliest round with an undecided row (0 is the base model) out "
        "of `rounds`; `tracks`: each track's latest planned round (a track runs ahead once "
        "its own round is decided); `rounds_decided`: rounds with every track decided; "
        "`jobs_done` of `jobs_total`: the undecided rows' jobs.",
    )
    rounds = StudyRoundSerializer(many=True, read_only=True)
    trajectory = serializers.DictField(
        child=serializers.ListField(child=serializers.DictField()),
        read_only=True,
        help_text="Per track, the decided rounds so far: round, parameters, mean, ci_low, "
        "ci_high, kept (null where undefined).",
    )

    class Meta(StudySerializer.Meta):
        fields = [*StudySerializer.Meta.fields, "progress", "rounds", "trajectory"]
        read_only_fields = fields


class StudyFilter(filters.FilterSet):
    ordering_fields = ["created_at", "finished_at", "status"]
    model = filters.ModelChoiceFilter(
        field_name="subject_model", queryset=SubjectModel.objects.all()
    )
    created_after, created_before = date_time_range("created_at")

    class Meta:
        model = Study
        fields = ["status"]


# --- views ---------------------------------------------------------------------------------

DATETIME = serializers.DateTimeField()
ROUND_LINKS = {
    "finding": "api:finding-detail",
    "insight": "api:insight-detail",
    "change": "api:architecturechange-detail",
    "outcome": "api:outcome-detail",
}


def round_rows(rounds: list[StudyRound], request) -> list[dict]:
    """Each round as StudyRoundSerializer describes it; record links from one URL template per
    kind of record, so the cost does not grow with the rounds."""
    templates = {name: url_template(request, url_name) for name, url_name in ROUND_LINKS.items()}
    rows = []
    for study_round in rounds:
        row = {
            "index": study_round.index,
            "track": study_round.track,
            "spec": study_round.spec,
            "plan": study_round.plan,
            "parameters": study_round.parameters,
            "params_added": study_round.params_added,
            "values": study_round.values,
            "summary": study_round.summary,
            "mechanism": study_round.mechanism,
            "decision": study_round.decision,
            "kept": study_round.kept,
            "created_at": DATETIME.to_representation(study_round.created_at),
            "decided_at": DATETIME.to_representation(study_round.decided_at),  # None stays None
        }
        for name, (prefix, suffix) in templates.items():
            pk = getattr(study_round, f"{name}_id")
            row[name] = pk
            row[f"{name}_url"] = None if pk is None else f"{prefix}{pk}{suffix}"
        rows.append(json_safe(row))
    return rows


@extend_schema_view(
    retrieve=extend_schema(responses={200: StudyDetailSerializer}),
    create=extend_schema(request=StudyRequestSerializer, responses={201: StudyDetailSerializer}),
)
class StudyViewSet(KbReadViewSet):
    """A study searches architectures round by round on three tracks (guided by a written
    rule applied to the model's profile, a budget-matched random change, every layer widened
    alike), trains each candidate over the seeds, keeps it when it beats the track's current
    model, and reports guided against the controls. A study is also a run (`run_url`): the
    run permissions apply, and its jobs show there."""

    queryset = Study.objects.all()
    serializer_class = StudySerializer
    create_serializer_class = StudyRequestSerializer
    filterset_class = StudyFilter
    ordering_fields = StudyFilter.ordering_fields
    # The proxy model's own permissions are granted to no role: a study is read, requested
    # and steered with the run permissions.
    action_permissions = {
        "list": VIEW_RUNS,
        "retrieve": VIEW_RUNS,
        "metadata": VIEW_RUNS,
        "create": REQUEST_RUNS,
        "cancel": STEER_RUNS,
        "resume": STEER_RUNS,
    }

    def attach(self, rows: list[dict]) -> None:
        for row in rows:
            row["result"] = json_safe(row["result"])
            finished = row["status"] in AnalysisRun.FINISHED_STATUSES
            row["waiting_for_queue"] = not finished and row["dispatched_at"] is None

    def detail_data(self, pk) -> dict:
        """The list row plus progress, rounds and trajectory: a fixed number of queries
        whatever the number of rounds."""
        row = super().detail_data(pk)
        study = Study.objects.get(pk=row["id"])
        row["progress"] = json_safe(study_progress(study))
        row["rounds"] = round_rows(study_rounds(study), self.request)
        row["trajectory"] = json_safe(study_trajectory(study))
        return row

    def create(self, request, *args, **kwargs):
        """Request a study of a built-in model: its design is frozen now and its first round
        (the base model over the seeds) goes to the workers; answers 201 with the study and a
        `Location` header to poll. Bad settings answer 400 with messages per field (`seeds`,
        `dataset.n`, `tracks` ...) and nothing is written."""
        serializer = StudyRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        study = study_request(actor=request.user, **serializer.validated_data)
        data = self.detail_data(study.pk)
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": data["url"]})

    @extend_schema(request=None, responses={200: StudyDetailSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued or running study. Its decided rounds, and the records they wrote,
        stay; a finished study answers 400."""
        study = study_cancel(actor=request.user, study=self.get_object())
        return Response(self.detail_data(study.pk))

    @extend_schema(request=None, responses={202: StudyDetailSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Queue a cancelled or failed study again: each track continues from its last decided
        round. Any other study answers 400."""
        study = study_resume(actor=request.user, study=self.get_object())
        return Response(self.detail_data(study.pk), status=status.HTTP_202_ACCEPTED)
