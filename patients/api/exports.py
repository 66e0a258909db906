"""API endpoints: exports.

``GET /api/v1/exports/outcomes/?format=csv|xlsx|fhir&…`` and
``GET /api/v1/exports/adverse-events/?format=csv|xlsx&…``,
``GET /api/v1/exports/reminders/?format=csv|xlsx&…`` and
``GET /api/v1/exports/recall/?lot=<id>&format=csv|xlsx`` answer a small export
with the file itself (streamed) and a large one with ``202 Accepted`` and the
job, whose ``download`` and ``manifest`` links work once it is done.  Only
people with the export capability (clinic admins and auditors) get anywhere;
everyone else gets 403.  Decisions are made in ``patients.exports``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from clinic.api.base import ScopedPrimaryKeyRelatedField, ScopedReadOnlyViewSet
from clinic.api.router import router
from clinic.api.strict import StrictSerializer
from clinic.models import Clinic
from clinic.roles import Capability
from clinic.scoping import can, can_anywhere, clinic_of, scoped
from patients import exports
from patients.admin.exports import file_download, manifest_download, streaming_download
from patients.models import Export
from protocols.models import ProductLot, Protocol


class CanExport(BasePermission):
    """The export capability in some clinic, and in the clinic of the export looked at."""

    message = "Exports need the clinic admin or auditor role."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_anywhere(request.user, Capability.EXPORT)

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return can(request.user, Capability.EXPORT, clinic_of(obj))


class FormatIsAFileFormat(BaseContentNegotiation):
    """Here ``?format=`` names the export's file format, not an API renderer, so it is ignored for negotiation."""

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> tuple:
        return renderers[0], renderers[0].media_type

    def select_parser(self, request: Request, parsers: list) -> Any:
        return parsers[0] if parsers else None


class ExportSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    percent = serializers.IntegerField(read_only=True)
    download_url = serializers.SerializerMethodField()
    manifest_url = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = [
            "id", "clinic", "kind", "format", "identified", "date_handling", "filters", "streamed", "status",
            "rows_done", "rows_total", "percent", "row_count", "sha256", "file_name", "error", "requested_by",
            "created_at", "started_at", "finished_at", "expires_at", "manifest", "download_url", "manifest_url",
        ]
        read_only_fields = fields

    def _url(self, name: str, export: Export) -> str:
        # Django's reverse, not DRF's: DRF would carry ?format= over, which here means the file format.
        return self.context["request"].build_absolute_uri(reverse(name, args=[export.pk]))

    def get_download_url(self, export: Export) -> str | None:
        return self._url("export-download", export) if export.is_downloadable else None

    def get_manifest_url(self, export: Export) -> str | None:
        return self._url("export-manifest", export) if export.manifest else None


class ExportParamsSerializer(StrictSerializer):
    """The query parameters of an export request."""

    format = serializers.ChoiceField(choices=Export.Format.choices, default=Export.Format.CSV)
    clinic = ScopedPrimaryKeyRelatedField(
        queryset=Clinic.objects.all(), capability=Capability.EXPORT, required=False,
        help_text="Needed only if you may export more than one clinic.",
    )
    identified = serializers.BooleanField(default=False, help_text="Names, emails and birth dates instead of pseudonyms.")
    date_handling = serializers.ChoiceField(
        choices=[Export.DateHandling.SHIFTED, Export.DateHandling.DAY_OFFSETS], default=Export.DateHandling.SHIFTED,
        help_text="For de-identified exports: dates shifted per patient, or days since the first treatment.",
    )
    date_from = serializers.DateField(
        required=False, help_text="Outcomes and adverse events: procedure date; reminders: due date."
    )
    date_to = serializers.DateField(required=False)
    protocol = ScopedPrimaryKeyRelatedField(queryset=Protocol.objects.all(), required=False)
    clinician = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.none(), required=False)
    background = serializers.BooleanField(default=False, help_text="Run as a background job even if small.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        self.fields["clinician"].queryset = exports.clinician_choices(getattr(request, "user", None))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "clinic" not in attrs:
            clinics = list(exports.export_clinics(self.context["request"].user)[:2])
            if len(clinics) != 1:
                raise serializers.ValidationError({"clinic": ["Say which clinic to export: you may export several."]})
            attrs["clinic"] = clinics[0]
        return attrs

    def export_request(self, *, kind: str) -> exports.ExportRequest:
        data = self.validated_data
        return exports.ExportRequest(
            clinic=data["clinic"], kind=kind, format=data["format"], identified=data["identified"],
            date_handling=data["date_handling"], date_from=data.get("date_from"), date_to=data.get("date_to"),
            protocol=data.get("protocol"), clinician=data.get("clinician"),
        )


class RecallParamsSerializer(StrictSerializer):
    """The query parameters of a lot's recall list: the lot, and the file format. Always identified."""

    lot = ScopedPrimaryKeyRelatedField(
        queryset=ProductLot.objects.all(), capability=Capability.EXPORT,
        help_text="The lot, one of a clinic whose data you may export.",
    )
    format = serializers.ChoiceField(
        choices=[Export.Format.CSV, Export.Format.XLSX], default=Export.Format.CSV,
    )
    clinic = ScopedPrimaryKeyRelatedField(
        queryset=Clinic.objects.all(), capability=Capability.EXPORT, required=False,
        help_text="Optional: the lot's clinic (the lot says which).",
    )
    background = serializers.BooleanField(default=False, help_text="Run as a background job even if small.")

    def export_request(self) -> exports.ExportRequest:
        data = self.validated_data
        lot = data["lot"]
        return exports.ExportRequest(
            clinic=data.get("clinic") or lot.clinic, kind=Export.Kind.RECALL, format=data["format"], identified=True,
            lot=lot,
        )


_EXPORT_PARAMETERS = [
    OpenApiParameter(
        "format", str, enum=["csv", "xlsx", "fhir"], description="File format (reminders, adverse events: csv or xlsx)."
    ),
    OpenApiParameter("clinic", int, description="Clinic id; needed only if you may export more than one clinic."),
    OpenApiParameter("identified", bool, description="true for names, emails and birth dates; default de-identified."),
    OpenApiParameter("date_handling", str, enum=["shifted", "day_offsets"], description="De-identified dates."),
    OpenApiParameter(
        "date_from", OpenApiTypes.DATE, description="Outcomes and adverse events: procedure date; reminders: due date."
    ),
    OpenApiParameter("date_to", OpenApiTypes.DATE),
    OpenApiParameter("protocol", int),
    OpenApiParameter("clinician", int),
    OpenApiParameter("background", bool, description="Run as a background job even if small."),
]
_FILE_RESPONSES = {
    (200, media_type.split(";")[0]): OpenApiResponse(OpenApiTypes.BINARY, description="The file.")
    for media_type in exports.CONTENT_TYPES.values()
}
_EXPORT_RESPONSES = {
    **{key: OpenApiResponse(OpenApiTypes.BINARY, description="The file (small exports), streamed.") for key in _FILE_RESPONSES},
    202: OpenApiResponse(ExportSerializer, description="A background job; poll it, then follow download_url."),
    400: OpenApiResponse(description="Field errors; nothing was started."),
    403: OpenApiResponse(description="Exports need the clinic admin or auditor role."),
}


_RECALL_PARAMETERS = [
    OpenApiParameter("lot", int, required=True, description="The lot whose applications are listed."),
    OpenApiParameter("format", str, enum=["csv", "xlsx"], description="File format."),
    OpenApiParameter("clinic", int, description="Optional: the lot's clinic."),
    OpenApiParameter("background", bool, description="Run as a background job even if small."),
]


class ExportViewSet(ScopedReadOnlyViewSet):
    """Export jobs of the clinics you may export, and the exports themselves."""

    serializer_class = ExportSerializer
    permission_classes = [CanExport]
    content_negotiation_class = FormatIsAFileFormat
    queryset = Export.objects.select_related("clinic", "requested_by")

    def get_queryset(self) -> Any:
        # The export capability, not mere membership: a coordinator sees no jobs.
        return scoped(Export.objects.select_related("clinic", "requested_by"), self.request.user, Capability.EXPORT)

    def _run(self, request: Request, *, kind: str) -> HttpResponse | Response:
        if kind == Export.Kind.RECALL:
            params: StrictSerializer = RecallParamsSerializer(data=request.query_params, context={"request": request})
            params.is_valid(raise_exception=True)
            export_request = params.export_request()
        else:
            params = ExportParamsSerializer(data=request.query_params, context={"request": request})
            params.is_valid(raise_exception=True)
            export_request = params.export_request(kind=kind)
        try:
            export = exports.start_export(
                user=request.user, request=export_request, background=params.validated_data["background"]
            )
        except exports.ExportRequestError as refused:
            raise serializers.ValidationError(refused.errors) from None
        if export.streamed:
            return streaming_download(export, request=request._request)
        body = ExportSerializer(export, context={"request": request}).data
        location = request.build_absolute_uri(reverse("export-detail", args=[export.pk]))
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})

    @extend_schema(parameters=_EXPORT_PARAMETERS, responses=_EXPORT_RESPONSES)
    @action(detail=False, methods=["get"])
    def outcomes(self, request: Request) -> HttpResponse | Response:
        """The outcome log: one row per assessment with treatment, protocol, arm, lot, scores and adverse events."""
        return self._run(request, kind=Export.Kind.OUTCOMES)

    @extend_schema(parameters=_EXPORT_PARAMETERS, responses=_EXPORT_RESPONSES)
    @action(detail=False, methods=["get"], url_path="adverse-events")
    def adverse_events(self, request: Request) -> HttpResponse | Response:
        """Every adverse event of the treatments the outcome log covers, once each, with who recorded it and when."""
        return self._run(request, kind=Export.Kind.ADVERSE_EVENTS)

    @extend_schema(parameters=_EXPORT_PARAMETERS, responses=_EXPORT_RESPONSES)
    @action(detail=False, methods=["get"])
    def reminders(self, request: Request) -> HttpResponse | Response:
        """The reminder delivery ledger: every reminder with step, due time, status, attempts, sent time and error."""
        return self._run(request, kind=Export.Kind.REMINDERS)

    @extend_schema(parameters=_RECALL_PARAMETERS, responses=_EXPORT_RESPONSES)
    @action(detail=False, methods=["get"])
    def recall(self, request: Request) -> HttpResponse | Response:
        """A lot's recall list: every application of the lot with the patient's contact details, identified."""
        return self._run(request, kind=Export.Kind.RECALL)

    @extend_schema(responses={**_FILE_RESPONSES, 404: OpenApiResponse(description="No file (any more).")})
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str | None = None) -> HttpResponse:
        """The stored file of a finished background export, while it is kept."""
        return file_download(self.get_object(), request=request._request)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 404: OpenApiResponse(description="Not finished yet.")})
    @action(detail=True, methods=["get"])
    def manifest(self, request: Request, pk: str | None = None) -> HttpResponse:
        """Row count, filters, generated-by, generated-at and the SHA-256 of the file."""
        return manifest_download(self.get_object())


router.register("exports", ExportViewSet, basename="export")
