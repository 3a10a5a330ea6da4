"""API viewsets. Thin: reads go through `RowBuilder` and the API selectors, every write calls
one service, whose ValidationError becomes a 400 (kb/api/exceptions.py)."""

from collections.abc import Mapping

from django.db.models import QuerySet
from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.settings import api_settings

from analysis import services as analysis_services
from analysis.models import AnalysisRun
from kb.api import filters, selectors
from kb.api import serializers as s
from kb.api.mixins import (
    NO_PRECONDITION,
    UNKNOWN_FIELD,
    ThrottleFirstMixin,
    etag,
    if_match_precondition,
    update_precondition,
)
from kb.api.pagination import EventCursorPagination
from kb.api.parsers import (
    LimitedJSONParser,
    LimitedMultiPartParser,
    TranscriptUploadParser,
)
from kb.api.permissions import RolePermission
from kb.api.rows import RowBuilder
from kb.models import (
    Answer,
    ArchitectureChange,
    Event,
    Finding,
    Highlight,
    Insight,
    Interview,
    Outcome,
    Question,
    Researcher,
    Stance,
    SubjectModel,
    Survey,
    SurveyInvitation,
    Theme,
)
from kb.selectors import highlights_visible
from kb.services.changes import change_copy, change_create, change_update
from kb.services.codebook import (
    highlight_create,
    highlight_delete,
    highlight_update,
    theme_create,
    theme_delete,
)
from kb.services.insights import (
    insight_create,
    insight_unlink,
    insight_update,
    outcome_delete_manual,
    outcome_record_manual,
)
from kb.services.interviews import (
    QUESTION_MOVES,
    answer_create,
    answer_update,
    interview_create,
    interview_update,
    question_create,
    question_delete,
    question_move,
    question_update,
    survey_create,
)
from kb.services.invitations import invitation_create, invitation_withdraw
from kb.services.people import researcher_anonymise, researcher_create
from kb.services.records import RecordChanged, record_delete, record_update
from kb.services.subjects import (
    finding_create,
    finding_update,
    subject_model_create,
    subject_model_update,
)

NOT_NUL = "\x00"


def documented(read, create=None, update=None):
    """Schema: writes take their input serializer and answer with the representation."""
    return extend_schema_view(
        create=extend_schema(request=create or read, responses={201: read}),
        partial_update=extend_schema(request=update or read, responses={200: read}),
    )


class KbReadViewSet(ThrottleFirstMixin, viewsets.GenericViewSet):
    """List and retrieve one kind of record, serialised from `.values()` rows."""

    permission_classes = [RolePermission]
    lookup_value_regex = "[0-9]+"
    filter_backends = [DjangoFilterBackend, SearchFilter, OrderingFilter]
    create_serializer_class = None
    update_serializer_class = None
    # The writes that read a body. Any other write (a delete, or an action such as cancel or
    # copy) would ignore one, so a body sent to it is refused; an action that starts reading
    # a body without being named here answers 400 in its first test, never silently.
    body_actions = frozenset(
        {"create", "partial_update", "move", "unlink", "profile", "ablate", "run_experiment"}
    )
    _builders: dict[type, RowBuilder] = {}

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # PostgreSQL refuses NUL in text; a query string carrying one is bad input, not a 500.
        if any(NOT_NUL in key or NOT_NUL in value for key, value in request.GET.items()):
            raise ValidationError({"query": ["Null characters are not allowed."]})
        if request.method not in SAFE_METHODS and self.action not in {None, *self.body_actions}:
            self._refuse_body(request)

    @staticmethod
    def _refuse_body(request) -> None:
        if request.data:
            raise ValidationError(
                {name: [UNKNOWN_FIELD] for name in request.data}
                if isinstance(request.data, Mapping)
                else {api_settings.NON_FIELD_ERRORS_KEY: ["This action takes no body."]}
            )

    def get_queryset(self) -> QuerySet:
        return self.queryset.all()

    def get_serializer_class(self):
        if self.action == "create" and self.create_serializer_class:
            return self.create_serializer_class
        if self.action == "partial_update" and self.update_serializer_class:
            return self.update_serializer_class
        return self.serializer_class

    @classmethod
    def row_builder(cls) -> RowBuilder:
        if cls not in cls._builders:
            cls._builders[cls] = RowBuilder(cls.serializer_class)
        return cls._builders[cls]

    # --- reads ------------------------------------------------------------------------------

    def represent(self, rows) -> list[dict]:
        rows = self.row_builder().build(rows, self.request)
        if rows:
            self.attach(rows)
        return rows

    def attach(self, rows: list[dict]) -> None:
        """Add nested summaries to a page of rows, with a fixed number of queries."""

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset.values(*self.row_builder().value_names))
        return self.get_paginated_response(self.represent(page))

    def retrieve(self, request, *args, **kwargs):
        return Response(self.detail_data(self.kwargs["pk"]))

    # The answers that carry one record's representation; a versioned one gets its ETag.
    etag_actions = frozenset({"retrieve", "create", "partial_update", "unlink"})

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        data = getattr(response, "data", None)
        if (
            self.action in self.etag_actions
            and response.status_code < 300
            and isinstance(data, Mapping)
            and "version" in data
        ):
            response["ETag"] = etag(data["version"])
        return response

    def detail_data(self, pk) -> dict:
        rows = self.get_queryset().filter(pk=pk).values(*self.row_builder().value_names)
        rows = self.represent(rows)
        if not rows:
            raise NotFound
        return rows[0]


class KbViewSet(KbReadViewSet):
    """Adds create (POST), update (PATCH) and delete; each calls one service."""

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        instance = self.create_record(dict(serializer.validated_data))
        data = self.detail_data(instance.pk)
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": data["url"]})

    def partial_update(self, request, *args, **kwargs):
        """A versioned record's PATCH names the version it was made on (kb.api.mixins)."""
        instance = self.get_object()
        header = if_match_precondition(request, instance)  # checked before the body is read
        serializer = self.get_serializer(instance, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        precondition = update_precondition(
            instance, body_version=data.pop("version", None), header=header
        )
        try:
            self.update_record(instance, data, **precondition.service_kwargs())
        except RecordChanged as error:  # saved by someone else since the check above
            raise precondition.refused(error) from None
        return Response(self.detail_data(instance.pk))

    def destroy(self, request, *args, **kwargs):
        instance = self.get_object()
        precondition = if_match_precondition(request, instance) or NO_PRECONDITION
        try:
            self.delete_record(instance, **precondition.service_kwargs())
        except RecordChanged as error:
            raise precondition.refused(error) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    def create_record(self, data: dict):
        raise NotImplementedError

    def update_record(self, instance, data: dict, expected_version: int | None = None) -> None:
        record_update(
            instance, actor=self.request.user, data=data, expected_version=expected_version
        )

    def delete_record(self, instance, expected_version: int | None = None) -> None:
        record_delete(instance, actor=self.request.user, expected_version=expected_version)


def _run_accepted(view: KbReadViewSet, run: AnalysisRun) -> Response:
    url = view.request.build_absolute_uri(reverse("api:analysisrun-detail", args=[run.pk]))
    body = {
        "id": run.pk,
        "url": url,
        "status": run.status,
        "waiting_for_queue": run.waiting_for_queue,
    }
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": url})


def _queue_run(view: KbReadViewSet, request, request_run, target: str) -> Response:
    """Validate the run request body, then queue the run on the view's object (passed to the
    service as `target`) and answer 202, saying whether the run waits for the task queue to
    answer again (it is saved either way and starts by itself)."""
    serializer = s.RunRequestSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    target_object = {target: view.get_object()}
    run = request_run(actor=request.user, **target_object, **serializer.validated_data)
    return _run_accepted(view, run)


RUN_REQUEST_SCHEMA = extend_schema(
    request=s.RunRequestSerializer, responses={202: s.RunAcceptedSerializer}
)
RUN_PERMS = ["analysis.add_analysisrun"]


@documented(s.ResearcherSerializer)
class ResearcherViewSet(KbViewSet):
    queryset = Researcher.objects.all()
    serializer_class = s.ResearcherSerializer
    filterset_class = filters.ResearcherFilter
    search_fields = ["pseudonym", "research_area"]
    ordering_fields = filters.ResearcherFilter.ordering_fields

    action_permissions = {"anonymise": ["kb.change_researcher"]}

    def create_record(self, data):
        return researcher_create(actor=self.request.user, **data)

    @extend_schema(request=None, responses={200: s.ResearcherSerializer})
    @action(detail=True, methods=["post"])
    def anonymise(self, request, pk=None):
        """Erase the researcher's name, affiliation and e-mail everywhere (history and event
        log included) and replace the pseudonym. Their interviews, answers and quotes stay
        when they consented to keeping them, else they are deleted. Their waiting survey links
        are withdrawn."""
        researcher = researcher_anonymise(actor=request.user, researcher=self.get_object())
        return Response(self.detail_data(researcher.pk))


@documented(s.SurveySerializer, create=s.SurveyCreateSerializer)
class SurveyViewSet(KbViewSet):
    queryset = Survey.objects.all()
    serializer_class = s.SurveySerializer
    create_serializer_class = s.SurveyCreateSerializer
    search_fields = ["title", "description"]
    ordering_fields = ["title", "created_at"]

    def attach(self, rows):
        selectors.survey_attach_questions(rows)

    def create_record(self, data):
        return survey_create(actor=self.request.user, **data)


@documented(s.QuestionSerializer, s.QuestionCreateSerializer, s.QuestionUpdateSerializer)
class QuestionViewSet(KbViewSet):
    queryset = Question.objects.all()
    serializer_class = s.QuestionSerializer
    create_serializer_class = s.QuestionCreateSerializer
    update_serializer_class = s.QuestionUpdateSerializer
    filterset_class = filters.QuestionFilter
    search_fields = ["text"]
    ordering_fields = filters.QuestionFilter.ordering_fields
    action_permissions = {"move": ["kb.change_question"]}

    def create_record(self, data):
        return question_create(actor=self.request.user, **data)

    def update_record(self, instance, data):
        question_update(actor=self.request.user, question=instance, data=data)

    def delete_record(self, instance):
        question_delete(actor=self.request.user, question=instance)

    @extend_schema(request=s.QuestionMoveSerializer, responses={200: s.QuestionSerializer})
    @action(detail=True, methods=["post"])
    def move(self, request, pk=None):
        """Swap the question with its neighbour; at either end of the survey nothing moves."""
        serializer = s.QuestionMoveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        offset = QUESTION_MOVES[serializer.validated_data["direction"]]
        question = question_move(actor=request.user, question=self.get_object(), offset=offset)
        return Response(self.detail_data(question.pk))


INVITATION_PERMS = {
    action: [f"kb.{verb}_surveyinvitation", "kb.view_researcher"]
    for action, verb in (("list", "view"), ("retrieve", "view"), ("create", "add"),
                         ("withdraw", "change"))
}  # fmt: skip


@extend_schema_view(
    create=extend_schema(
        request=s.InvitationCreateSerializer, responses={201: s.InvitationCreatedSerializer}
    )
)
class InvitationViewSet(KbReadViewSet):
    """Single-use links that let a researcher answer a survey without an account. Each names
    a researcher, so only roles that may see researchers list, create or withdraw them."""

    queryset = SurveyInvitation.objects.all()
    serializer_class = s.InvitationSerializer
    create_serializer_class = s.InvitationCreateSerializer
    filterset_class = filters.InvitationFilter
    ordering_fields = filters.InvitationFilter.ordering_fields
    action_permissions = INVITATION_PERMS

    def attach(self, rows):
        selectors.invitation_attach_state(rows)

    def create(self, request, *args, **kwargs):
        """Create a link; the answer holds the link itself, the one time it is shown."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation, token = invitation_create(actor=request.user, **serializer.validated_data)
        data = self.detail_data(invitation.pk)
        data["link"] = request.build_absolute_uri(reverse("survey-respond", args=[token]))
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": data["url"]})

    @extend_schema(request=None, responses={200: s.InvitationSerializer})
    @action(detail=True, methods=["post"])
    def withdraw(self, request, pk=None):
        """Make a waiting link stop working now; an answered link is refused (400)."""
        invitation = invitation_withdraw(actor=request.user, invitation=self.get_object())
        return Response(self.detail_data(invitation.pk))


@documented(s.InterviewSerializer, s.InterviewCreateSerializer, s.InterviewUpdateSerializer)
class InterviewViewSet(KbViewSet):
    queryset = Interview.objects.all()
    serializer_class = s.InterviewSerializer
    create_serializer_class = s.InterviewCreateSerializer
    update_serializer_class = s.InterviewUpdateSerializer
    filterset_class = filters.InterviewFilter
    search_fields = ["transcript", "summary", "researcher__pseudonym"]
    ordering_fields = filters.InterviewFilter.ordering_fields
    action_permissions = {"transcript": ["kb.change_interview"]}
    body_actions = KbViewSet.body_actions | {"transcript"}

    def create_record(self, data):
        return interview_create(actor=self.request.user, **data)

    def update_record(self, instance, data):
        interview_update(actor=self.request.user, interview=instance, data=data)

    @extend_schema(
        request={"multipart/form-data": s.InterviewTranscriptUploadSerializer},
        responses={200: s.InterviewSerializer},
    )
    @action(detail=True, methods=["post"], parser_classes=[TranscriptUploadParser])
    def transcript(self, request, pk=None):
        """Replace the transcript with an uploaded file's (multipart/form-data: .txt, .docx,
        .vtt or .srt), speaker turns kept. A file that is not what its name says, too large,
        empty or not UTF-8 answers 400 under `transcript_file`; so does one that would remove
        a highlighted passage (under `transcript`), as a PATCH would."""
        interview = self.get_object()
        serializer = s.InterviewTranscriptUploadSerializer(
            data=request.data, context={"interview": interview}
        )
        serializer.is_valid(raise_exception=True)
        interview_update(actor=request.user, interview=interview, data=serializer.validated_data)
        return Response(self.detail_data(interview.pk))


@documented(s.AnswerSerializer, s.AnswerCreateSerializer, s.AnswerUpdateSerializer)
class AnswerViewSet(KbViewSet):
    queryset = Answer.objects.all()
    serializer_class = s.AnswerSerializer
    create_serializer_class = s.AnswerCreateSerializer
    update_serializer_class = s.AnswerUpdateSerializer
    filterset_class = filters.AnswerFilter
    search_fields = ["text"]
    ordering_fields = filters.AnswerFilter.ordering_fields

    def create_record(self, data):
        return answer_create(actor=self.request.user, **data)

    def update_record(self, instance, data):
        answer_update(actor=self.request.user, answer=instance, data=data)


@documented(s.ThemeSerializer)
class ThemeViewSet(KbViewSet):
    queryset = Theme.objects.all()
    serializer_class = s.ThemeSerializer
    filterset_class = filters.ThemeFilter
    search_fields = ["name", "description"]
    ordering_fields = filters.ThemeFilter.ordering_fields

    def create_record(self, data):
        return theme_create(actor=self.request.user, **data)

    def delete_record(self, instance):
        theme_delete(actor=self.request.user, theme=instance)


@documented(s.HighlightSerializer, update=s.HighlightUpdateSerializer)
class HighlightViewSet(KbViewSet):
    queryset = Highlight.objects.all()
    serializer_class = s.HighlightSerializer
    update_serializer_class = s.HighlightUpdateSerializer
    filterset_class = filters.HighlightFilter
    search_fields = ["quote", "note"]
    ordering_fields = filters.HighlightFilter.ordering_fields

    def get_queryset(self) -> QuerySet:
        # A coder coding blind sees only their own highlights on the round's interviews.
        return highlights_visible(user=self.request.user, queryset=self.queryset.all())

    def create_record(self, data):
        return highlight_create(actor=self.request.user, **data)

    def update_record(self, instance, data):
        highlight_update(actor=self.request.user, highlight=instance, **data)

    def delete_record(self, instance, expected_version: int | None = None):
        highlight_delete(
            actor=self.request.user, highlight=instance, expected_version=expected_version
        )


@documented(
    s.SubjectModelSerializer, s.SubjectModelCreateSerializer, s.SubjectModelUpdateSerializer
)
class SubjectModelViewSet(KbViewSet):
    queryset = SubjectModel.objects.all()
    serializer_class = s.SubjectModelSerializer
    create_serializer_class = s.SubjectModelCreateSerializer
    update_serializer_class = s.SubjectModelUpdateSerializer
    # A model's weights file comes as multipart/form-data; everything else is JSON.
    parser_classes = [LimitedJSONParser, LimitedMultiPartParser]
    filterset_class = filters.SubjectModelFilter
    search_fields = ["name", "family", "task", "dataset"]
    ordering_fields = filters.SubjectModelFilter.ordering_fields
    action_permissions = {"profile": RUN_PERMS}

    def create_record(self, data):
        return subject_model_create(actor=self.request.user, **data)

    def update_record(self, instance, data) -> None:
        subject_model_update(actor=self.request.user, model=instance, data=data)

    @RUN_REQUEST_SCHEMA
    @action(detail=True, methods=["post"])
    def profile(self, request, pk=None):
        """Queue activation profiling of a built-in model; answers 202 with the run's URL."""
        return _queue_run(self, request, analysis_services.profile_request, "subject_model")


@documented(s.FindingSerializer, update=s.FindingUpdateSerializer)
class FindingViewSet(KbViewSet):
    queryset = Finding.objects.all()
    serializer_class = s.FindingSerializer
    update_serializer_class = s.FindingUpdateSerializer
    filterset_class = filters.FindingFilter
    search_fields = ["title", "description", "concept"]
    ordering_fields = filters.FindingFilter.ordering_fields
    action_permissions = {"ablate": RUN_PERMS}

    def create_record(self, data):
        return finding_create(actor=self.request.user, **data)

    def update_record(self, instance, data, expected_version=None) -> None:
        finding_update(
            actor=self.request.user, finding=instance, data=data, expected_version=expected_version
        )

    @RUN_REQUEST_SCHEMA
    @action(detail=True, methods=["post"])
    def ablate(self, request, pk=None):
        """Queue an ablation of the finding's units; answers 202 with the run's URL."""
        return _queue_run(self, request, analysis_services.ablation_request, "finding")


@documented(s.InsightSerializer, s.InsightCreateSerializer, s.InsightUpdateSerializer)
class InsightViewSet(KbViewSet):
    queryset = Insight.objects.all()
    serializer_class = s.InsightSerializer
    create_serializer_class = s.InsightCreateSerializer
    update_serializer_class = s.InsightUpdateSerializer
    filterset_class = filters.InsightFilter
    search_fields = ["title", "statement"]
    ordering_fields = filters.InsightFilter.ordering_fields
    action_permissions = {"unlink": ["kb.change_insight"]}

    def attach(self, rows):
        user = self.request.user
        selectors.insight_attach_evidence(
            rows, request=self.request, with_quotes=selectors.can_see_quotes(user)
        )
        selectors.insight_attach_changes(rows, request=self.request)

    def create_record(self, data):
        evidence = self._evidence(data)
        return insight_create(actor=self.request.user, **evidence, **data)

    def update_record(self, instance, data, expected_version=None) -> None:
        evidence = self._evidence(data)
        insight_update(
            actor=self.request.user,
            insight=instance,
            data=data,
            expected_version=expected_version,
            **evidence,
        )

    @extend_schema(request=s.InsightUnlinkSerializer, responses={200: s.InsightSerializer})
    @action(detail=True, methods=["post"])
    def unlink(self, request, pk=None):
        """Remove findings and quotes from the insight's evidence (all or none); the findings
        and highlights themselves stay. With If-Match, an insight changed since answers 412."""
        insight = self.get_object()
        precondition = if_match_precondition(request, insight) or NO_PRECONDITION
        serializer = s.InsightUnlinkSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data["highlights"] and not selectors.can_see_quotes(request.user):
            raise PermissionDenied("Your role may not unlink quotes.")
        try:
            insight_unlink(
                actor=request.user,
                insight=insight,
                **serializer.validated_data,
                **precondition.service_kwargs(),
            )
        except RecordChanged as error:
            raise precondition.refused(error) from None
        return Response(self.detail_data(insight.pk))

    def _evidence(self, data: dict) -> dict:
        """Pop the findings and highlights links out of data, by stance, as the services take
        them; quotes only from a role that may see them."""
        findings, highlights = data.pop("findings", []), data.pop("highlights", [])
        if highlights and not selectors.can_see_quotes(self.request.user):
            raise PermissionDenied("Your role may not link quotes.")
        return {
            f"{stance_name}_{kind}s": [link[kind] for link in links if link["stance"] == stance]
            for kind, links in (("finding", findings), ("highlight", highlights))
            for stance, stance_name in ((Stance.SUPPORTS, "supporting"),
                                        (Stance.CONTRADICTS, "contradicting"))
        }  # fmt: skip


@documented(s.ChangeSerializer, update=s.ChangeUpdateSerializer)
class ChangeViewSet(KbViewSet):
    queryset = ArchitectureChange.objects.all()
    serializer_class = s.ChangeSerializer
    update_serializer_class = s.ChangeUpdateSerializer
    filterset_class = filters.ChangeFilter
    search_fields = ["rationale", "expected_metric"]
    ordering_fields = filters.ChangeFilter.ordering_fields
    action_permissions = {"run_experiment": RUN_PERMS, "copy": ["kb.add_architecturechange"]}

    def attach(self, rows):
        selectors.change_attach_latest_outcome(rows, request=self.request)

    def create_record(self, data):
        return change_create(actor=self.request.user, **data)

    def update_record(self, instance, data, expected_version=None) -> None:
        change_update(
            actor=self.request.user, change=instance, data=data, expected_version=expected_version
        )

    @extend_schema(request=None, responses={201: s.ChangeSerializer})
    @action(detail=True, methods=["post"])
    def copy(self, request, pk=None):
        """A new proposed change with the same insight, model, operation, parameters and
        expectations. Once a run has measured a change it can no longer be edited (PATCH
        answers 400): copy it to try something else."""
        copy = change_copy(actor=request.user, change=self.get_object())
        data = self.detail_data(copy.pk)
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": data["url"]})

    @RUN_REQUEST_SCHEMA
    @action(detail=True, methods=["post"], url_path="run-experiment")
    def run_experiment(self, request, pk=None):
        """Queue the change's experiment (baseline, guided change and budget-matched random
        control over several seeds); answers 202 with the run's URL."""
        return _queue_run(self, request, analysis_services.experiment_request, "change")


@documented(s.OutcomeSerializer, s.OutcomeCreateSerializer, s.OutcomeUpdateSerializer)
class OutcomeViewSet(KbViewSet):
    queryset = Outcome.objects.all()
    serializer_class = s.OutcomeSerializer
    create_serializer_class = s.OutcomeCreateSerializer
    update_serializer_class = s.OutcomeUpdateSerializer
    filterset_class = filters.OutcomeFilter
    search_fields = ["notes", "metric"]
    ordering_fields = filters.OutcomeFilter.ordering_fields

    def attach(self, rows):
        selectors.outcome_attach_settings(rows)

    def create_record(self, data):
        return outcome_record_manual(actor=self.request.user, **data)

    def delete_record(self, instance):
        outcome_delete_manual(actor=self.request.user, outcome=instance)


class RunViewSet(KbReadViewSet):
    """Analysis runs: status, progress, result and figure URLs. Runs are started by the
    actions on changes, findings and models; here they can be cancelled and retried."""

    queryset = AnalysisRun.objects.all()
    serializer_class = s.RunSerializer
    filterset_class = filters.RunFilter
    ordering_fields = filters.RunFilter.ordering_fields
    action_permissions = {
        "cancel": ["analysis.change_analysisrun"],
        "retry": ["analysis.change_analysisrun"],
    }

    def attach(self, rows):
        selectors.run_attach_details(rows, request=self.request)

    @extend_schema(request=None, responses={200: s.RunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued or running run."""
        run = analysis_services.run_cancel(actor=request.user, run=self.get_object())
        return Response(self.detail_data(run.pk))

    @extend_schema(request=None, responses={202: s.RunSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Queue a failed or cancelled run again."""
        run = analysis_services.run_retry(actor=request.user, run=self.get_object())
        return Response(self.detail_data(run.pk), status=status.HTTP_202_ACCEPTED)


class EventViewSet(KbReadViewSet):
    """The append-only event log, newest first (cursor pagination)."""

    serializer_class = s.EventSerializer
    filterset_class = filters.EventFilter
    filter_backends = [DjangoFilterBackend]
    pagination_class = EventCursorPagination
    queryset = Event.objects.all()

    def get_queryset(self):
        return selectors.event_list_visible(user=self.request.user)

    def attach(self, rows):
        selectors.event_attach_target_type(rows)
