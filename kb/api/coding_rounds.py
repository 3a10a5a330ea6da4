"""Coding rounds in the API: list, start, read one, a coder marks their part done, close.

Read with the permissions that read highlights; write with the one that creates them. Blind
coding is not decided here: the highlight endpoints read through
kb.selectors.highlights_visible.
"""

from collections.abc import Mapping

from django.contrib.auth import get_user_model
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from kb import selectors
from kb.api.mixins import UNKNOWN_FIELD, ThrottleFirstMixin
from kb.api.pagination import KbPagination
from kb.api.permissions import permissions_required
from kb.api.serializers import KbSerializer
from kb.models import CodingRound, Interview
from kb.services import coding_rounds

READ = ("kb.view_highlight", "kb.view_interview")
WRITE = ("kb.add_highlight",)


class CodingRoundCoderSerializer(serializers.Serializer):
    coder = serializers.IntegerField(help_text="The coder's user id.")
    username = serializers.CharField()
    done_at = serializers.DateTimeField(
        allow_null=True, help_text="When the coder marked their part done; null while coding."
    )


class CodingRoundSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    name = serializers.CharField()
    interviews = serializers.ListField(child=serializers.IntegerField())
    coders = CodingRoundCoderSerializer(many=True)
    created_by = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)
    blind = serializers.BooleanField(
        help_text="Whether the caller still codes blind in this round: they see only their "
        "own highlights on its interviews until they mark their part done or it closes."
    )


class CodingRoundCreateSerializer(KbSerializer):
    name = serializers.CharField(max_length=120)
    interviews = serializers.PrimaryKeyRelatedField(
        queryset=Interview.objects.all(), many=True, allow_empty=False
    )
    coders = serializers.PrimaryKeyRelatedField(
        queryset=get_user_model().objects.filter(is_active=True),
        many=True,
        allow_empty=False,
        help_text="User ids of the coders (at least two, each allowed to create highlights).",
    )


def represent(coding_round: CodingRound, request) -> dict:
    url = request.build_absolute_uri(reverse("api:codinground-detail", args=[coding_round.pk]))
    return {
        "id": coding_round.pk,
        "url": url,
        "name": coding_round.name,
        "interviews": sorted(i.pk for i in coding_round.interviews.all()),
        "coders": [
            {"coder": p.coder_id, "username": p.coder.get_username(), "done_at": p.done_at}
            for p in coding_round.coders.all()
        ],
        "created_by": coding_round.created_by_id,
        "created_at": coding_round.created_at,
        "closed_at": coding_round.closed_at,
        "blind": selectors.coding_round_blind_for(coding_round, request.user),
    }


class CodingRoundViewSet(
    ThrottleFirstMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Coding rounds: chosen coders code chosen interviews blind until each marks their part
    done (POST .../done/) or the round is closed (POST .../close/)."""

    queryset = CodingRound.objects.all()  # for the schema; reads use get_queryset
    serializer_class = CodingRoundSerializer
    pagination_class = KbPagination
    lookup_value_regex = "[0-9]+"

    def get_permissions(self):
        write = self.action in {"create", "done", "close"}
        return [permissions_required(*(READ + WRITE if write else READ))()]

    def get_queryset(self):
        return selectors.coding_round_list()

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([represent(r, request) for r in page])

    def retrieve(self, request, *args, **kwargs):
        return Response(represent(self.get_object(), request))

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # done and close read no body: one sent is refused rather than silently ignored.
        if self.action in {"done", "close"} and request.data:
            raise ValidationError(
                {name: [UNKNOWN_FIELD] for name in request.data}
                if isinstance(request.data, Mapping)
                else {"non_field_errors": ["This action takes no body."]}
            )

    def _answer(self, pk, code=status.HTTP_200_OK, headers=None) -> Response:
        data = represent(selectors.coding_round_get(pk), self.request)
        return Response(data, status=code, headers=headers)

    @extend_schema(request=CodingRoundCreateSerializer, responses={201: CodingRoundSerializer})
    def create(self, request, *args, **kwargs):
        serializer = CodingRoundCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        coding_round = coding_rounds.round_start(actor=request.user, **serializer.validated_data)
        response = self._answer(coding_round.pk, status.HTTP_201_CREATED)
        response["Location"] = response.data["url"]
        return response

    @extend_schema(request=None, responses={200: CodingRoundSerializer})
    @action(detail=True, methods=["post"])
    def done(self, request, pk=None):
        """The calling coder marks their part done: from now on they see the other coders'
        highlights on this round's interviews. 400 for a non-coder, a closed round or a part
        already done."""
        coding_round = self.get_object()
        coding_rounds.round_mark_done(actor=request.user, coding_round=coding_round)
        return self._answer(coding_round.pk)

    @extend_schema(request=None, responses={200: CodingRoundSerializer})
    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        """Close the round: blind coding ends for every coder. 400 when already closed."""
        coding_round = self.get_object()
        coding_rounds.round_close(actor=request.user, coding_round=coding_round)
        return self._answer(coding_round.pk)
