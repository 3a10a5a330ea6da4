"""Exchange with qualitative tools (kb.services.exchange): the codebook as REFI-QDA .qdc and
as CSV, the coding project as .qdpx, and imports of both REFI-QDA files."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from kb.api.mixins import ThrottleFirstMixin
from kb.api.parsers import refuse_declared_length_over
from kb.api.permissions import permissions_required
from kb.api.reports import CSVRenderer
from kb.api.serializers import KbSerializer
from kb.exchange import ExchangeFileRefused, max_request_size, read_upload
from kb.models import Researcher
from kb.services import exchange
from kb.services.exchange import IMPORT_PROJECT_PERMISSIONS, PROJECT_PERMISSIONS

QDC_TYPE = "application/xml"
QDPX_TYPE = "application/zip"


class _FileRenderer(BaseRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes | str) else b""


class QDCRenderer(_FileRenderer):
    media_type = QDC_TYPE
    format = "qdc"


class QDPXRenderer(_FileRenderer):
    media_type = QDPX_TYPE
    format = "qdpx"
    charset = None


def _attachment(content: bytes | str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class CodebookQDCView(ThrottleFirstMixin, APIView):
    """The codebook as a REFI-QDA codebook (.qdc, QDA-XML codebook 1.0): every theme as a code,
    nested as here, with its description and colour. GUIDs are stable: the same theme has the
    same GUID in every export."""

    permission_classes = [permissions_required("kb.view_theme")]
    renderer_classes = [JSONRenderer, QDCRenderer]

    @extend_schema(
        operation_id="export_codebook_qdc", responses={(200, QDC_TYPE): OpenApiTypes.BINARY}
    )
    def get(self, request):
        return _attachment(exchange.codebook_export_qdc(), QDC_TYPE, "codebook.qdc")


class CodebookCSVView(ThrottleFirstMixin, APIView):
    """The codebook as CSV with the columns Taguette's codebook import reads: `tag` (the theme's
    path, names joined by "/"), `description`, and `parent` (the parent's path)."""

    permission_classes = [permissions_required("kb.view_theme")]
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(operation_id="export_codebook_csv", responses={(200, "text/csv"): str})
    def get(self, request):
        return _attachment(
            exchange.codebook_export_csv(), "text/csv; charset=utf-8", "codebook.csv"
        )


class ProjectQDPXView(ThrottleFirstMixin, APIView):
    """The coding project as a REFI-QDA project (.qdpx): the codebook, the transcripts of
    interviews whose consent keeps their words as text sources, their transcript highlights
    as coded selections with their coders (users, by username only), and one case per
    interviewee, by pseudonym. No name, affiliation or e-mail of anyone. Researchers only."""

    permission_classes = [permissions_required(*PROJECT_PERMISSIONS)]
    renderer_classes = [JSONRenderer, QDPXRenderer]

    @extend_schema(
        operation_id="export_project_qdpx", responses={(200, QDPX_TYPE): OpenApiTypes.BINARY}
    )
    def get(self, request):
        return _attachment(
            exchange.project_export_qdpx(user=request.user), QDPX_TYPE, "project.qdpx"
        )


class ExchangeUploadParser(MultiPartParser):
    """A .qdc or .qdpx file: the body may hold the exchange upload limit more than a JSON
    body; the file itself is held to that limit when it is read (kb.exchange)."""

    def parse(self, stream, media_type=None, parser_context=None):
        refuse_declared_length_over(max_request_size(), parser_context)
        return super().parse(stream, media_type, parser_context)


FILE_HELP = "at most EXCHANGE_MAX_UPLOAD_SIZE bytes (20 MiB by default)"


class CodebookImportSerializer(KbSerializer):
    file = serializers.FileField(help_text=f"A REFI-QDA codebook (.qdc), {FILE_HELP}.")


class ProjectImportSerializer(KbSerializer):
    file = serializers.FileField(help_text=f"A REFI-QDA project (.qdpx), {FILE_HELP}.")
    researcher = serializers.PrimaryKeyRelatedField(
        queryset=Researcher.objects.filter(anonymised_at__isnull=True),
        required=False,
        allow_null=True,
        help_text="The interviewee of every source whose case names no pseudonym known here.",
    )


class CodebookImportReportSerializer(serializers.Serializer):
    added = serializers.ListField(
        child=serializers.CharField(), help_text="Themes added, as paths (Parent / Child)."
    )
    kept = serializers.ListField(
        child=serializers.CharField(),
        help_text="Codes that matched a theme already here by name (case-insensitive).",
    )


class ProjectImportReportSerializer(serializers.Serializer):
    codebook = CodebookImportReportSerializer()
    interviews_added = serializers.ListField(child=serializers.CharField())
    sources_already_present = serializers.ListField(
        child=serializers.CharField(),
        help_text="Sources skipped: the same transcript of the same interviewee is here.",
    )
    highlights_added = serializers.IntegerField()
    selections_uncoded = serializers.IntegerField(help_text="Selections with no code, skipped.")


def _import(call):
    """Run an import; a refused file answers 400 under `file`."""
    try:
        return call()
    except ExchangeFileRefused as error:
        raise serializers.ValidationError({"file": error.messages}) from None


class CodebookImportView(ThrottleFirstMixin, APIView):
    """Merge a REFI-QDA codebook (.qdc, multipart/form-data `file`) into the themes: a code
    whose name (case-insensitive) is a theme's here keeps that theme; the others are added
    with their parent, description and colour. A file that is not a .qdc, too large, or
    holding a code that cannot be a theme answers 400 under `file`, and nothing is written."""

    permission_classes = [permissions_required("kb.add_theme")]
    parser_classes = [ExchangeUploadParser]

    @extend_schema(
        operation_id="import_codebook",
        request={"multipart/form-data": CodebookImportSerializer},
        responses={200: CodebookImportReportSerializer},
    )
    def post(self, request):
        serializer = CodebookImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = _import(lambda: read_upload(serializer.validated_data["file"]))
        report = _import(lambda: exchange.codebook_import_qdc(actor=request.user, data=data))
        return Response(CodebookImportReportSerializer(report).data)


class ProjectImportView(ThrottleFirstMixin, APIView):
    """Import a REFI-QDA project (.qdpx, multipart/form-data `file`): its codebook is merged as
    the codebook import does, each text source becomes an interview of the researcher its
    case names (by pseudonym) or of `researcher`, and each coded selection a highlight per
    coder (users matched by username); a source already here (the same text of the same
    interviewee, as stored or as our export masks it) is skipped. A bad or damaged file, more
    than 500 sources or 5000 selections, a source's text that an uploaded transcript could
    not have (empty, binary characters, over TRANSCRIPT_MAX_UPLOAD_SIZE characters), a code
    GUID the codebook lacks, positions outside the text, a source with no interviewee here or
    one whose consent does not keep their words, or a coder with no account answers 400 under
    `file` (or `researcher`), and nothing is written. A body declared larger than the upload
    limit (EXCHANGE_MAX_UPLOAD_SIZE) is refused (413) before it is read."""

    permission_classes = [permissions_required(*IMPORT_PROJECT_PERMISSIONS)]
    parser_classes = [ExchangeUploadParser]

    @extend_schema(
        operation_id="import_project",
        request={"multipart/form-data": ProjectImportSerializer},
        responses={200: ProjectImportReportSerializer},
    )
    def post(self, request):
        serializer = ProjectImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = _import(lambda: read_upload(serializer.validated_data["file"]))
        report = _import(
            lambda: exchange.project_import_qdpx(
                actor=request.user,
                data=data,
                researcher=serializer.validated_data.get("researcher"),
            )  # fmt: skip
        )
        return Response(ProjectImportReportSerializer(report).data)
