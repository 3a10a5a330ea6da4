"""Statistics (theme prevalence, the scoreboard) and exports (the knowledge base as one
streamed JSON document; CSV for outcomes and theme-by-researcher)."""

import csv
import json
from collections import defaultdict

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView

from analysis.models import Study, StudyRound
from kb import agreement, selectors, statistics
from kb.api import views
from kb.api.mixins import ThrottleFirstMixin
from kb.api.permissions import permissions_required
from kb.api.rows import RowBuilder, values_chunks
from kb.api.serializers import MAX_ID
from kb.models import Highlight, InsightFinding, InsightHighlight, Interview, Outcome, Theme

EXPORT_CHUNK = 2000

# --- statistics ---------------------------------------------------------------------------


class ProportionSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    n = serializers.IntegerField()
    share = serializers.FloatField(allow_null=True)
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)


class ThemePrevalenceRowSerializer(serializers.Serializer):
    theme = serializers.IntegerField()
    name = serializers.CharField()
    parent = serializers.IntegerField(allow_null=True)
    highlights = serializers.IntegerField()
    researchers = ProportionSerializer()
    by_role = serializers.DictField(child=ProportionSerializer())


class ThemePrevalenceSerializer(serializers.Serializer):
    researchers = serializers.IntegerField()
    roles = serializers.DictField(child=serializers.IntegerField())
    themes = ThemePrevalenceRowSerializer(many=True)


class ScoreBlockSerializer(serializers.Serializer):
    changes = serializers.IntegerField()
    beat_baseline = ProportionSerializer()
    beat_control = ProportionSerializer()


class OperationScoreSerializer(ScoreBlockSerializer):
    operation = serializers.CharField()


class ModelScoreSerializer(ScoreBlockSerializer):
    model = serializers.IntegerField()
    name = serializers.CharField()


class ScoreboardSerializer(serializers.Serializer):
    overall = ScoreBlockSerializer()
    by_operation = OperationScoreSerializer(many=True)
    by_model = ModelScoreSerializer(many=True)


class ThemePrevalenceQuerySerializer(serializers.Serializer):
    """Which coding the statistics count: every coder's (default), one coder's, or the
    consensus version's."""

    coder = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        help_text="Count only this coder's highlights (a user id); N is then the researchers "
        "with an interview this coder coded.",
    )
    version = serializers.ChoiceField(
        choices=["consensus"],
        required=False,
        help_text="`consensus`: count only the consensus version built after coding rounds; "
        "N is then the researchers with an interview that has one.",
    )

    def validate_coder(self, coder: int) -> int:
        if not get_user_model().objects.filter(pk=coder).exists():
            raise serializers.ValidationError(f"No user with id {coder}.")
        return coder

    def validate(self, attrs: dict) -> dict:
        try:
            statistics.theme_scope_validate(coder=attrs.get("coder"), version=attrs.get("version"))
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict) from error
        return attrs


class ThemePrevalenceView(ThrottleFirstMixin, APIView):
    """Per theme: researchers who raised it (with descendants), shares with Wilson 95%
    intervals, overall and by researcher role. Aggregates only: no quotes, no names. The
    coders' highlights count (never consensus copies of them), or with ?coder= one coder's,
    or with ?version=consensus the consensus version's."""

    permission_classes = [permissions_required("kb.view_theme")]

    @extend_schema(
        parameters=[ThemePrevalenceQuerySerializer], responses={200: ThemePrevalenceSerializer}
    )
    def get(self, request):
        query = ThemePrevalenceQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        scope = query.validated_data
        # Who coded what is about highlights, which a viewer may not read.
        if "coder" in scope and not request.user.has_perm("kb.view_highlight"):
            raise PermissionDenied("Your role may not see statistics per coder.")
        return Response(
            statistics.theme_prevalence(
                user=request.user,
                coder_id=scope.get("coder"),
                consensus=scope.get("version") == "consensus",
            )
        )


class ScoreboardView(ThrottleFirstMixin, APIView):
    """How often guided changes beat their baseline and their budget-matched random control."""

    permission_classes = [permissions_required("kb.view_outcome", "kb.view_architecturechange")]

    @extend_schema(responses={200: ScoreboardSerializer})
    def get(self, request):
        return Response(statistics.scoreboard())


class AgreementCoderSerializer(serializers.Serializer):
    coder = serializers.IntegerField(help_text="The coder's user id.")
    username = serializers.CharField()
    coded_characters = serializers.IntegerField(
        help_text="Characters this coder coded with the theme (overall: (theme, character) pairs)."
    )


class AgreementBlockSerializer(serializers.Serializer):
    alpha = serializers.FloatField(
        allow_null=True, help_text="Krippendorff's alpha (nominal); null when undefined."
    )
    kappa = serializers.FloatField(
        allow_null=True,
        help_text="Cohen's kappa; null unless exactly two coders, or when undefined.",
    )
    coders = AgreementCoderSerializer(many=True)


class AgreementThemeSerializer(AgreementBlockSerializer):
    theme = serializers.IntegerField()
    name = serializers.CharField()


class AgreementUserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class AgreementSerializer(serializers.Serializer):
    interviews = serializers.ListField(child=serializers.IntegerField())
    characters = serializers.IntegerField(help_text="Units per theme: the transcripts' length.")
    coders = AgreementUserSerializer(many=True)
    themes = AgreementThemeSerializer(many=True)
    overall = AgreementBlockSerializer()


class AgreementQuerySerializer(serializers.Serializer):
    interview = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        min_length=1,
        max_length=agreement.MAX_INTERVIEWS,
        error_messages={"min_length": "Choose at least one interview (?interview=<id>)."},
    )

    def validate_interview(self, ids: list[int]) -> list[int]:
        """The ids, once each, every one an interview (one query for them all)."""
        ids = sorted(set(ids))
        unknown = set(ids) - set(Interview.objects.filter(pk__in=ids).values_list("pk", flat=True))
        if unknown:
            raise serializers.ValidationError(
                f"No interview with id {', '.join(map(str, sorted(unknown)))}."
            )
        return ids


class AgreementView(ThrottleFirstMixin, APIView):
    """Agreement between coders on the chosen interviews' transcripts, per theme and overall:
    for each theme and coder, every character is coded or not; Krippendorff's alpha (nominal)
    over all coders, Cohen's kappa when exactly two. Overall takes each (theme, character)
    pair as a unit. Coders are the users with a highlight on these transcripts; answer
    highlights and highlights with no recorded coder are left out. An undefined value (one
    coder, no variation) is null, never 0."""

    permission_classes = [permissions_required("kb.view_highlight", "kb.view_interview")]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "interview",
                int,
                many=True,
                required=True,
                description="An interview's id; repeat it for several.",
            )
        ],
        operation_id="statistics_agreement",
        responses={200: AgreementSerializer},
    )
    def get(self, request):
        query = AgreementQuerySerializer(
            data={"interview": request.query_params.getlist("interview")}
        )
        query.is_valid(raise_exception=True)
        chosen = query.validated_data["interview"]
        return Response(selectors.interview_agreement(chosen, user=request.user))


# --- the JSON export ----------------------------------------------------------------------

# (section, viewset, permission); link tables are plain pairs.
SECTIONS = [
    ("researchers", views.ResearcherViewSet, "kb.view_researcher"),
    ("surveys", views.SurveyViewSet, "kb.view_survey"),
    ("questions", views.QuestionViewSet, "kb.view_question"),
    ("interviews", views.InterviewViewSet, "kb.view_interview"),
    ("answers", views.AnswerViewSet, "kb.view_answer"),
    ("themes", views.ThemeViewSet, "kb.view_theme"),
    ("highlights", views.HighlightViewSet, "kb.view_highlight"),
    ("models", views.SubjectModelViewSet, "kb.view_subjectmodel"),
    ("findings", views.FindingViewSet, "kb.view_finding"),
    ("insights", views.InsightViewSet, "kb.view_insight"),
    ("changes", views.ChangeViewSet, "kb.view_architecturechange"),
    ("outcomes", views.OutcomeViewSet, "kb.view_outcome"),
    ("runs", views.RunViewSet, "analysis.view_analysisrun"),
]
# (section, link model, the evidence it links, permission)
LINKS = [
    ("insight_findings", InsightFinding, "finding", "kb.view_insightfinding"),
    ("insight_highlights", InsightHighlight, "highlight", "kb.view_insighthighlight"),
]
# (section, model, columns, permission): rows as stored. A study is also in "runs"; here it
# sits with its rounds, which the API shows only inside their study.
STUDY_COLUMNS = [
    "id", "subject_model", "status", "config", "config_digest", "result", "error",
    "requested_by", "created_at", "started_at", "finished_at",
]  # fmt: skip
STUDY_ROUND_COLUMNS = [
    "id", "study", "index", "track", "spec", "plan", "parameters", "params_added", "values",
    "summary", "mechanism", "decision", "kept", "finding", "insight", "change", "outcome",
    "created_at", "decided_at",
]  # fmt: skip
STORED = [
    ("studies", Study, STUDY_COLUMNS, "analysis.view_analysisrun"),
    ("study_rounds", StudyRound, STUDY_ROUND_COLUMNS, "analysis.view_analysisrun"),
]
SECTION_NAMES = [name for name, *_ in SECTIONS + LINKS + STORED]
SECTION_PERMS = [(name, perm) for name, *_, perm in SECTIONS + LINKS + STORED]


def export_sections(user, wanted: list[str] | None) -> list[str]:
    """The sections a user may export, in document order."""
    return [
        name
        for name, perm in SECTION_PERMS
        if user.has_perm(perm) and (not wanted or name in wanted)
    ]


def _encode_chunks(chunks, encoder: JSONEncoder):
    """Yield a JSON array's body, one chunk of rows at a time (constant memory)."""
    first = True
    for rows in chunks:
        if rows:
            yield ("" if first else ",") + encoder.encode(rows)[1:-1]
            first = False


def _section_chunks(name: str, request):
    viewsets = {section: viewset for section, viewset, _ in SECTIONS}
    if name in viewsets:
        builder: RowBuilder = viewsets[name].row_builder()
        templates = builder.templates(request)
        queryset = viewsets[name].queryset.order_by("pk")
        if name == "highlights":  # a coder coding blind exports only what they may see
            queryset = selectors.highlights_visible(user=request.user, queryset=queryset)
        for rows in values_chunks(queryset, builder.value_names, EXPORT_CHUNK):
            yield builder.build(rows, request, templates)
        return
    stored = {section: (model, columns) for section, model, columns, _ in STORED}
    if name in stored:
        model, columns = stored[name]
        yield from values_chunks(model.objects.order_by("pk"), columns, EXPORT_CHUNK)
        return
    model, evidence = {section: (model, evidence) for section, model, evidence, _ in LINKS}[name]
    yield from values_chunks(
        model.objects.order_by("pk"), ["id", "insight", evidence, "stance"], EXPORT_CHUNK
    )


def export_document(request, sections: list[str]):
    """Yield the export as text chunks: {"exported_at": ..., "<section>": [rows], ...}.
    Rows are the API's list representation without nested summaries; links between
    insights and evidence are sections of their own; studies and their rounds are rows as
    stored (STORED)."""
    encoder = JSONEncoder()
    yield '{"exported_at":' + encoder.encode(timezone.now())
    for name in sections:
        yield f',"{name}":['
        yield from _encode_chunks(_section_chunks(name, request), encoder)
        yield "]"
    yield "}"


ExportDocumentSerializer = type(
    "ExportDocumentSerializer",
    (serializers.Serializer,),
    {
        "exported_at": serializers.DateTimeField(),
        **{
            name: serializers.ListField(child=serializers.DictField(), required=False)
            for name in SECTION_NAMES
        },
    },
)


class ExportView(ThrottleFirstMixin, APIView):
    """The whole knowledge base the caller may see, as one JSON document, streamed."""

    permission_classes = [permissions_required()]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "sections",
                str,
                description=f"Comma-separated subset of: {', '.join(SECTION_NAMES)}.",
            )
        ],
        operation_id="export_document",
        responses={200: ExportDocumentSerializer},
    )
    def get(self, request):
        wanted = [name for name in request.GET.get("sections", "").split(",") if name]
        unknown = sorted(set(wanted) - set(SECTION_NAMES))
        if unknown:
            raise serializers.ValidationError({"sections": [f"Unknown: {', '.join(unknown)}."]})
        sections = export_sections(request.user, wanted)
        if not sections and not wanted:
            raise PermissionDenied
        response = StreamingHttpResponse(
            export_document(request, sections), content_type="application/json"
        )
        response["Content-Disposition"] = 'attachment; filename="insight-kb.json"'
        return response


# --- CSV ----------------------------------------------------------------------------------


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes | str) else json.dumps(data)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_response(header: list[str], rows, filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


OUTCOME_COLUMNS = [
    "id", "change", "change__operation", "change__target_model__name", "metric", "effect",
    "ci_low", "ci_high", "p_value", "effect_vs_control", "control_ci_low", "control_ci_high",
    "verdict", "source", "recorded_at",
]  # fmt: skip


# What a measured outcome trained on (statistics.run_settings); empty for a manual outcome.
# A study's outcome: the study's frozen design, and run_url the study's own run.
OUTCOME_SETTINGS_COLUMNS = ["dataset", "dataset_size", "epochs", "seed_list", "run_url"]
# The study round that measured an outcome; empty for every other outcome.
OUTCOME_STUDY_COLUMNS = ["study", "study_round", "study_track"]


class OutcomesCSVView(ThrottleFirstMixin, APIView):
    """Every outcome, one row each, as CSV, with the settings it was measured with. An
    undefined statistic is an empty cell."""

    permission_classes = [permissions_required("kb.view_outcome")]
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(operation_id="export_outcomes_csv", responses={(200, "text/csv"): str})
    def get(self, request):
        rows = (
            Outcome.objects.order_by("pk")
            .values_list(
                *OUTCOME_COLUMNS,
                "analysis_run_id",
                "analysis_run__config",
                "change__target_model__architecture_spec",
                "study_round__study_id",
                "study_round__study__config",
                "study_round__index",
                "study_round__track",
            )
            .iterator(chunk_size=EXPORT_CHUNK)
        )
        run_url = request.build_absolute_uri(reverse("api:analysisrun-detail", args=[0]))
        renamed = [column.replace("change__target_model__name", "model").replace("__", "_")
                   for column in OUTCOME_COLUMNS]  # fmt: skip
        header = renamed + OUTCOME_SETTINGS_COLUMNS + OUTCOME_STUDY_COLUMNS
        return _csv_response(header, _with_settings(rows, run_url), "outcomes.csv")


def _with_settings(rows, run_url: str):
    """Each row with the settings columns in place of the run's id, config and model spec.
    `run_url` is the URL of run 0, a template for the others."""
    for *columns, run_id, config, spec, study_id, study_config, index, track in rows:
        study = [study_id, index, track]
        if study_id is not None:  # a study round's outcome: its run is the study
            run_id, config = study_id, study_config
        if run_id is None:
            yield [*columns, *[None] * len(OUTCOME_SETTINGS_COLUMNS), *study]
            continue
        settings = statistics.run_settings(config, fallback_spec=spec)
        seeds = " ".join(map(str, settings["seeds"]))
        url = run_url.replace("/0/", f"/{run_id}/")
        yield [*columns, settings["dataset"], settings["dataset_size"], settings["epochs"],
               seeds, url, *study]  # fmt: skip


class ThemeByResearcherCSVView(ThrottleFirstMixin, APIView):
    """Highlights per researcher (rows, by pseudonym) and theme (columns), as CSV."""

    permission_classes = [permissions_required("kb.view_researcher", "kb.view_highlight")]
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        operation_id="export_theme_by_researcher_csv", responses={(200, "text/csv"): str}
    )
    def get(self, request):
        themes = list(Theme.objects.order_by("name", "pk").values_list("pk", "name"))
        counts: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for theme_id, researcher_id in Highlight.themes.through.objects.values_list(
            "theme_id", "highlight__interview__researcher_id"
        ):
            counts[researcher_id][theme_id] += 1
        researchers = (
            Interview.objects.order_by("researcher__pseudonym")
            .values_list("researcher_id", "researcher__pseudonym", "researcher__role")
            .distinct()
        )
        rows = (
            [pseudonym, role, *(counts[researcher_id][theme_id] for theme_id, _ in themes)]
            for researcher_id, pseudonym, role in researchers
        )
        header = ["researcher", "role", *(name for _, name in themes)]
        return _csv_response(header, rows, "theme-by-researcher.csv")
