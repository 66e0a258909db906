"""API endpoints of the protocols app, registered on the shared router.

``/protocols/`` (with nested versions and steps; ``draft`` and ``publish``
actions), ``/protocol-versions/`` (draft settings, ``publish``, ``retire``,
``draft``, ``diff``), ``/protocol-steps/`` (steps of drafts), ``/products/``,
``/lots/`` and ``/contraindication-rules/``.  Reads need any role; writes need
``Capability.EDIT_PROTOCOLS`` in the row's clinic; shared rows (no clinic) are
readable by all staff and writable by none.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import FileExtensionValidator
from django.db import models, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.generics import get_object_or_404  # 404, not 500, for an id that is not a number
from rest_framework.request import Request
from rest_framework.response import Response

from clinic.api.base import ScopedModelViewSet, ScopedPrimaryKeyRelatedField, ScopedViewSetMixin, SharedRowClinicField
from clinic.api.filters import ApiFilterSet
from clinic.api.router import router
from clinic.api.schema import ErrorDetailSerializer
from clinic.api.strict import StrictModelSerializer, StrictSerializer
from clinic.ids import row_id
from clinic.models import Clinic
from clinic.roles import Capability
from clinic.scoping import can, clinics_for
from protocols import lot_states, lots, recalls, versioning
from protocols.defaults import customise_default_rule
from protocols.models import (
    CERTIFICATE_EXTENSIONS,
    ContraindicationRule,
    ExosomeProduct,
    Procedure,
    ProductLot,
    Protocol,
    ProtocolStep,
    ProtocolVersion,
)
from protocols.steps import StepInput, step_errors
from protocols.views import certificate_response

EDIT = Capability.EDIT_PROTOCOLS
# What a certificate download can be, by CERTIFICATE_EXTENSIONS (FileResponse guesses from the name).
CERTIFICATE_MEDIA_TYPES = ("application/pdf", "image/png", "image/jpeg")
Status = ProtocolVersion.Status


def _drf_error(error: DjangoValidationError) -> serializers.ValidationError:
    """The same message, as the 400 DRF renders (field errors stay keyed by field)."""
    if hasattr(error, "error_dict"):
        return serializers.ValidationError(error.message_dict)
    return serializers.ValidationError({"non_field_errors": error.messages})


def _model_clean(instance: models.Model) -> None:
    try:
        instance.clean()
    except DjangoValidationError as error:
        raise _drf_error(error) from None


def _merged(serializer: serializers.ModelSerializer, attrs: dict[str, Any], name: str) -> Any:
    """A field's value after this write: the new one, else the stored one, else the model default."""
    if name in attrs:
        return attrs[name]
    if serializer.instance is not None:
        return getattr(serializer.instance, name)
    return serializer.Meta.model._meta.get_field(name).get_default()


class ClinicFixedOnUpdate:
    """A row's clinic is chosen when it is created and never moved to another clinic."""

    def validate_clinic(self, clinic: Clinic) -> Clinic:
        instance = getattr(self, "instance", None)
        if instance is not None and instance.clinic_id != getattr(clinic, "pk", None):
            raise serializers.ValidationError("A row cannot move to another clinic.")
        return clinic


# --- rules -----------------------------------------------------------------------------------


class ContraindicationRuleSerializer(ClinicFixedOnUpdate, StrictModelSerializer):
    clinic = SharedRowClinicField(queryset=Clinic.objects.all(), capability=EDIT)
    procedures = serializers.ListField(
        child=serializers.ChoiceField(choices=Procedure.choices), required=False,
        help_text="Procedure codes; empty means every procedure.",
    )
    is_default = serializers.BooleanField(read_only=True)

    class Meta:
        model = ContraindicationRule
        fields = [
            "id", "clinic", "is_default", "code", "fact", "condition", "window_days", "values", "procedures",
            "applies_to", "severity", "message", "mitigation", "citation", "is_active",
        ]
        # The (clinic, code) pair is unique; checked in validate() with a clearer message.
        validators: list = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        values = {name: _merged(self, attrs, name) for name in ("fact", "condition", "window_days", "values",
                                                                 "procedures", "code", "clinic")}
        _model_clean(ContraindicationRule(**values))
        clashes = ContraindicationRule.objects.filter(clinic=values["clinic"], code=values["code"])
        if self.instance is not None:
            clashes = clashes.exclude(pk=self.instance.pk)
        if clashes.exists():
            raise serializers.ValidationError({"code": "Your clinic already has a rule with this code."})
        return attrs


class RuleFilter(ApiFilterSet):
    procedure = django_filters.ChoiceFilter(choices=Procedure.choices, method="filter_procedure",
                                            help_text="Rules that apply to this procedure (including 'all').")
    library = django_filters.ChoiceFilter(choices=[("default", "default"), ("clinic", "clinic")],
                                          method="filter_library")

    class Meta:
        model = ContraindicationRule
        fields = ["severity", "fact", "applies_to", "is_active", "clinic", "code"]

    def filter_procedure(self, queryset: models.QuerySet, name: str, value: str) -> models.QuerySet:
        # JSON text containment works on SQLite and PostgreSQL alike; the quotes
        # make "fractional_ablative" not match "fractional_nonablative".
        return queryset.filter(Q(procedures=[]) | Q(procedures__icontains=f'"{value}"'))

    def filter_library(self, queryset: models.QuerySet, name: str, value: str) -> models.QuerySet:
        return queryset.filter(clinic__isnull=value == "default")


class CustomiseSerializer(StrictSerializer):
    clinic = ScopedPrimaryKeyRelatedField(queryset=Clinic.objects.all(), capability=EDIT)


class ContraindicationRuleViewSet(ScopedModelViewSet):
    queryset = ContraindicationRule.objects.select_related("clinic")
    serializer_class = ContraindicationRuleSerializer
    filterset_class = RuleFilter
    write_capability = EDIT

    @extend_schema(request=CustomiseSerializer, responses={201: ContraindicationRuleSerializer})
    @action(detail=True, methods=["post"])
    def customise(self, request: Request, pk: str | None = None) -> Response:
        """Copy a default rule into a clinic; the copy replaces the default there."""
        # Not get_object(): a default rule has no clinic, so the object-level
        # write check would refuse; the write happens in the chosen clinic.
        rule = get_object_or_404(self.get_queryset(), pk=pk)
        body = CustomiseSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        clinic = body.validated_data["clinic"]
        if not can(request.user, EDIT, clinic):
            raise PermissionDenied("You may not edit this clinic's rules.")
        try:
            own = customise_default_rule(rule=rule, clinic=clinic, by=request.user)
        except DjangoValidationError as error:
            raise _drf_error(error) from None
        return Response(self.get_serializer(own).data, status=status.HTTP_201_CREATED)


# --- products and lots ------------------------------------------------------------------------


class ExosomeProductSerializer(ClinicFixedOnUpdate, StrictModelSerializer):
    clinic = SharedRowClinicField(queryset=Clinic.objects.all(), capability=EDIT)

    class Meta:
        model = ExosomeProduct
        fields = [
            "id", "clinic", "name", "manufacturer", "source", "cell_type", "plated", "characterisation",
            "publishes_particle_size", "publishes_markers", "publishes_potency_assay", "tested_sterility",
            "tested_endotoxin", "tested_vesicle_concentration", "storage_requirements", "storage_min_celsius",
            "storage_max_celsius", "regulatory_status", "notes", "is_active",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        _model_clean(ExosomeProduct(**{
            name: _merged(self, attrs, name) for name in ("storage_min_celsius", "storage_max_celsius")
        }))
        return attrs


class ProductFilter(ApiFilterSet):
    class Meta:
        model = ExosomeProduct
        fields = ["source", "plated", "regulatory_status", "is_active", "clinic"]


class ExosomeProductViewSet(ScopedModelViewSet):
    queryset = ExosomeProduct.objects.select_related("clinic")
    serializer_class = ExosomeProductSerializer
    filterset_class = ProductFilter
    write_capability = EDIT


class NothingToLift(APIException):
    """409: a lift of a recall that is not there (already lifted, or never entered); nothing is recorded."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "not_recalled"
    default_detail = "This lot is not recalled; nothing to lift."


NOTHING_TO_LIFT = OpenApiResponse(
    ErrorDetailSerializer,
    description="recall_lift_reason was sent for a lot that is not recalled (its recall already lifted, say by a "
                "retried request): nothing was saved or logged.",
)


class ProductLotSerializer(ClinicFixedOnUpdate, StrictModelSerializer):
    clinic = ScopedPrimaryKeyRelatedField(queryset=Clinic.objects.all(), capability=EDIT)
    product = ScopedPrimaryKeyRelatedField(queryset=ExosomeProduct.objects.all())
    certificate = serializers.FileField(
        write_only=True, required=False, allow_null=True, validators=[FileExtensionValidator(CERTIFICATE_EXTENSIONS)],
        help_text="Certificate of analysis (PDF or image); multipart upload.",
    )
    certificate_url = serializers.SerializerMethodField(help_text="Staff-only download; empty when none.")
    state = serializers.SerializerMethodField(help_text=(
        "Today on the clinic's calendar: recalled, not_received (its received date is still to come), expired or "
        "usable, the first that holds."
    ))
    application_count = serializers.IntegerField(read_only=True)
    recall_lift_reason = serializers.CharField(
        write_only=True, required=False, allow_blank=True,
        help_text=(f"Needed with recalled=false on a recalled lot: why the recall is lifted, in a sentence "
                   f"({lots.LIFT_REASON_MIN_LENGTH} to {lots.LIFT_REASON_MAX_LENGTH} characters). Only a clinic "
                   "admin may lift a recall (403 otherwise); the reason is kept in the history and the access log. "
                   "Sent for a lot that is not recalled (its recall already lifted): 409, nothing saved."),
    )

    class Meta:
        model = ProductLot
        fields = [
            "id", "clinic", "product", "lot_number", "expiry_date", "received_date", "storage_checks", "certificate",
            "certificate_url", "recalled", "recalled_at", "recall_reason", "recall_lift_reason", "state",
            "application_count",
        ]
        read_only_fields = ["recalled_at"]
        validators: list = []

    def get_certificate_url(self, lot: ProductLot) -> str:
        if not lot.certificate:
            return ""
        request = self.context.get("request")
        url = reverse("lot-certificate", args=[lot.pk])
        return request.build_absolute_uri(url) if request is not None else url

    def get_state(self, lot: ProductLot) -> str:
        return lot_states.state_today(lot)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        lifting_nothing = self.instance is not None and not self.instance.recalled and attrs.get("recalled") is not True
        if lifting_nothing and (attrs.get("recall_lift_reason") or "").strip():
            # A second lift (a retry, or two people) would answer 200 as if it had lifted something.
            raise NothingToLift()
        names = ("clinic", "product", "lot_number", "expiry_date", "received_date", "recalled", "recall_reason",
                 "certificate")
        values = {name: _merged(self, attrs, name) for name in names}
        _model_clean(ProductLot(**values))
        clashes = ProductLot.objects.filter(
            clinic=values["clinic"], product=values["product"], lot_number=values["lot_number"]
        )
        if self.instance is not None:
            clashes = clashes.exclude(pk=self.instance.pk)
        if clashes.exists():
            raise serializers.ValidationError({"lot_number": "This product already has a lot with this number."})
        if self.instance is not None and lots.is_lifting(self.instance, attrs.get("recalled")):
            try:
                attrs["recall_lift_reason"] = lots.check_lift(
                    lot=self.instance, by=self.context["request"].user, reason=attrs.get("recall_lift_reason")
                )
            except DjangoPermissionDenied as refused:
                raise PermissionDenied(str(refused)) from None
            except DjangoValidationError as refused:
                raise _drf_error(refused) from None
        return attrs

    def create(self, validated_data: dict[str, Any]) -> ProductLot:
        validated_data.pop("recall_lift_reason", None)
        with transaction.atomic():
            lot = super().create(validated_data)
            if lot.recalled:
                recalls.record_recall(lot=lot, by=self.context["request"].user, request=self.context["request"])
        return lot

    def update(self, instance: ProductLot, validated_data: dict[str, Any]) -> ProductLot:
        reason = validated_data.pop("recall_lift_reason", None)
        if not lots.is_lifting(instance, validated_data.get("recalled")):
            with transaction.atomic():
                # The stored state, locked: of two requests recalling the lot at once, only the first logs a recall.
                was_recalled = ProductLot.objects.select_for_update().values_list("recalled", flat=True).get(
                    pk=instance.pk
                )
                lot = super().update(instance, validated_data)
                if lot.recalled and not was_recalled:
                    recalls.record_recall(lot=lot, by=self.context["request"].user, request=self.context["request"])
            return lot
        for name, value in validated_data.items():
            setattr(instance, name, value)
        try:
            return lots.lift_recall(lot=instance, by=self.context["request"].user, reason=reason,
                                    request=self.context["request"])
        except DjangoValidationError as refused:
            raise _drf_error(refused) from None


class LotFilter(ApiFilterSet):
    expired = django_filters.BooleanFilter(
        method="filter_expired", help_text="Expired today on the clinic's calendar (true) or not (false)."
    )
    usable_on = django_filters.DateFilter(method="filter_usable_on", help_text="Usable on this date.")

    class Meta:
        model = ProductLot
        fields = ["product", "clinic", "recalled", "lot_number"]

    def filter_expired(self, queryset: models.QuerySet, name: str, value: bool | None) -> models.QuerySet:
        if value is None:
            return queryset
        expired = lot_states.on_each_clinics_today(lot_states.expired, clinics=clinics_for(self.request.user))
        return queryset.filter(expired) if value else queryset.exclude(expired)

    def filter_usable_on(self, queryset: models.QuerySet, name: str, value: Any) -> models.QuerySet:
        return queryset.usable_on(value) if value else queryset


@extend_schema_view(
    update=extend_schema(responses={200: ProductLotSerializer, 409: NOTHING_TO_LIFT}),
    partial_update=extend_schema(responses={200: ProductLotSerializer, 409: NOTHING_TO_LIFT}),
)
class ProductLotViewSet(ScopedModelViewSet):
    queryset = (
        ProductLot.objects.select_related("product", "clinic")
        .annotate(application_count=Count("applications"))
        .order_by("product__name", "expiry_date", "pk")  # Meta.ordering is dropped from aggregate queries
    )
    serializer_class = ProductLotSerializer
    filterset_class = LotFilter
    write_capability = EDIT

    @extend_schema(responses={(200, media_type): OpenApiTypes.BINARY for media_type in CERTIFICATE_MEDIA_TYPES})
    @action(detail=True, methods=["get"])
    def certificate(self, request: Request, pk: str | None = None) -> Any:
        """Download the lot's certificate of analysis (logged in the access log)."""
        return certificate_response(lot=self.get_object(), request=request)


# --- protocols, versions, steps ----------------------------------------------------------------


class ProtocolStepSerializer(StrictModelSerializer):
    version = ScopedPrimaryKeyRelatedField(queryset=ProtocolVersion.objects.all(), capability=EDIT)
    product = ScopedPrimaryKeyRelatedField(queryset=ExosomeProduct.objects.all(), allow_null=True, required=False)

    class Meta:
        model = ProtocolStep
        fields = [
            "id", "version", "lineage", "order", "kind", "title", "patient_text", "staff_notes", "timing",
            "offset_value", "offset_unit", "day", "local_time", "repeat_count", "repeat_every_days",
            "avoid_until_day", "product", "sends_reminder", "remind_minutes_before",
        ]
        read_only_fields = ["lineage"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        version: ProtocolVersion = _merged(self, attrs, "version")
        if self.instance is not None and version.pk != self.instance.version_id:
            raise serializers.ValidationError({"version": "A step cannot move to another version."})
        version.refresh_from_db(fields=["status", "length_days"])
        if version.is_frozen:
            raise serializers.ValidationError(
                {"version": f"v{version.number} is {version.status} and cannot change; create a new draft version."}
            )
        product = _merged(self, attrs, "product")
        timing = StepInput(
            has_product=product is not None,
            **{name: _merged(self, attrs, name) for name in StepInput.__dataclass_fields__ if name != "has_product"},
        )
        errors = step_errors(timing, length_days=version.length_days)
        if product is not None and product.clinic_id not in (None, version.protocol.clinic_id):
            errors.setdefault("product", []).append("This product belongs to another clinic.")
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class ProtocolVersionSerializer(StrictModelSerializer):
    steps = ProtocolStepSerializer(many=True, read_only=True)
    added_rules = ScopedPrimaryKeyRelatedField(queryset=ContraindicationRule.objects.all(), many=True, required=False)
    removed_rules = ScopedPrimaryKeyRelatedField(queryset=ContraindicationRule.objects.all(), many=True, required=False)
    timeline_url = serializers.SerializerMethodField(help_text="The timeline picture (SVG) for signed-in staff.")

    class Meta:
        model = ProtocolVersion
        fields = [
            "id", "protocol", "number", "status", "change_note", "length_days", "added_rules", "removed_rules",
            "published_at", "published_by", "created_at", "timeline_url", "steps",
        ]
        read_only_fields = ["protocol", "number", "status", "published_at", "published_by", "created_at"]

    def get_timeline_url(self, version: ProtocolVersion) -> str:
        return reverse("protocols:version-timeline", args=[version.pk])

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        version = self.instance
        if version is None:
            raise serializers.ValidationError("Versions are started with the protocol's 'draft' action.")
        version.refresh_from_db(fields=["status"])
        if version.is_frozen:
            raise serializers.ValidationError(
                {"status": f"v{version.number} is {version.status} and cannot change; create a new draft version."}
            )
        clinic_id = version.protocol.clinic_id
        for name in ("added_rules", "removed_rules"):
            foreign = [rule.code for rule in attrs.get(name, []) if rule.clinic_id not in (None, clinic_id)]
            if foreign:
                raise serializers.ValidationError({name: f"Rules of another clinic: {', '.join(foreign)}."})
        if "length_days" in attrs:
            self._check_steps_fit(version, attrs["length_days"])
        return attrs

    def _check_steps_fit(self, version: ProtocolVersion, length_days: int) -> None:
        problems = [
            f"Step “{step.title}”: {message}"
            for step in version.steps.all()
            for messages in step_errors(step.as_input(), length_days=length_days).values()
            for message in messages
        ]
        if problems:
            raise serializers.ValidationError({"length_days": problems})


class ProtocolSerializer(ClinicFixedOnUpdate, StrictModelSerializer):
    clinic = SharedRowClinicField(queryset=Clinic.objects.all(), capability=EDIT)
    status = serializers.CharField(read_only=True, help_text="published, draft or retired (from its versions).")
    current_version = serializers.SerializerMethodField()
    versions = ProtocolVersionSerializer(many=True, read_only=True)

    class Meta:
        model = Protocol
        fields = ["id", "clinic", "name", "procedure", "description", "status", "current_version", "created_at",
                  "versions"]

    def get_current_version(self, protocol: Protocol) -> int | None:
        current = protocol.current_version
        return current.pk if current is not None else None

    def validate_procedure(self, procedure: str) -> str:
        instance = self.instance
        if instance is not None and procedure != instance.procedure and instance.versions.exclude(
            status=Status.DRAFT
        ).exists():
            raise serializers.ValidationError(
                "The procedure of a protocol with published versions cannot change; create a new protocol."
            )
        return procedure


class ProtocolFilter(ApiFilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices, method="filter_status")
    shared = django_filters.BooleanFilter(field_name="clinic", lookup_expr="isnull", help_text="Shared templates only.")

    class Meta:
        model = Protocol
        fields = ["procedure", "clinic"]

    def filter_status(self, queryset: models.QuerySet, name: str, value: str) -> models.QuerySet:
        def having(status_value: str) -> Exists:
            return Exists(ProtocolVersion.objects.filter(protocol=OuterRef("pk"), status=status_value))

        # The same order as Protocol.status: published beats draft beats retired.
        if value == Status.PUBLISHED:
            return queryset.filter(having(Status.PUBLISHED))
        if value == Status.DRAFT:
            return queryset.filter(~having(Status.PUBLISHED), having(Status.DRAFT))
        return queryset.filter(~having(Status.PUBLISHED), ~having(Status.DRAFT), having(Status.RETIRED))


class DraftRequestSerializer(StrictSerializer):
    from_version = serializers.IntegerField(required=False, help_text="Copy this version (default: newest published).")
    change_note = serializers.CharField(required=False, allow_blank=True, default="")


class PublishRequestSerializer(StrictSerializer):
    change_note = serializers.CharField(required=False, allow_blank=True)


def _run(service: Any, **kwargs: Any) -> Any:
    try:
        return service(**kwargs)
    except DjangoValidationError as error:
        raise _drf_error(error) from None


class ProtocolViewSet(ScopedModelViewSet):
    queryset = Protocol.objects.select_related("clinic").prefetch_related(
        "versions__steps", "versions__added_rules", "versions__removed_rules"
    )
    serializer_class = ProtocolSerializer
    filterset_class = ProtocolFilter
    write_capability = EDIT

    def perform_create(self, serializer: ProtocolSerializer) -> None:
        draft = versioning.create_protocol(by=self.request.user, **serializer.validated_data)
        serializer.instance = draft.protocol

    def perform_update(self, serializer: ProtocolSerializer) -> None:
        _run(serializer.save)

    @extend_schema(request=DraftRequestSerializer, responses={201: ProtocolVersionSerializer})
    @action(detail=True, methods=["post"])
    def draft(self, request: Request, pk: str | None = None) -> Response:
        """Start the next draft version, copying the newest published one (or ``from_version``)."""
        protocol = self.get_object()
        body = DraftRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        source = None
        if "from_version" in body.validated_data:
            source = protocol.versions.filter(pk=body.validated_data["from_version"]).first()
            if source is None:
                raise serializers.ValidationError({"from_version": "Not a version of this protocol."})
        draft = _run(versioning.start_draft, protocol=protocol, by=request.user, from_version=source,
                     change_note=body.validated_data["change_note"])
        return Response(ProtocolVersionSerializer(draft, context=self.get_serializer_context()).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=PublishRequestSerializer, responses={200: ProtocolVersionSerializer})
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, pk: str | None = None) -> Response:
        """Publish the protocol's draft version."""
        protocol = self.get_object()
        draft = protocol.versions.filter(status=Status.DRAFT).first()
        if draft is None:
            raise serializers.ValidationError({"non_field_errors": ["This protocol has no draft to publish."]})
        body = PublishRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        version = _run(versioning.publish, version=draft, by=request.user,
                       change_note=body.validated_data.get("change_note"))
        return Response(ProtocolVersionSerializer(version, context=self.get_serializer_context()).data)


class VersionFilter(ApiFilterSet):
    procedure = django_filters.ChoiceFilter(choices=Procedure.choices, field_name="protocol__procedure")

    class Meta:
        model = ProtocolVersion
        fields = ["protocol", "status"]


class ProtocolVersionViewSet(
    ScopedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = ProtocolVersion.objects.select_related("protocol").prefetch_related(
        "steps", "added_rules", "removed_rules"
    )
    serializer_class = ProtocolVersionSerializer
    filterset_class = VersionFilter
    write_capability = EDIT

    def perform_update(self, serializer: ProtocolVersionSerializer) -> None:
        _run(serializer.save)

    @extend_schema(request=PublishRequestSerializer, responses={200: ProtocolVersionSerializer})
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, pk: str | None = None) -> Response:
        body = PublishRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        version = _run(versioning.publish, version=self.get_object(), by=request.user,
                       change_note=body.validated_data.get("change_note"))
        return Response(self.get_serializer(version).data)

    @extend_schema(request=None, responses={200: ProtocolVersionSerializer})
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, pk: str | None = None) -> Response:
        version = _run(versioning.retire, version=self.get_object(), by=request.user)
        return Response(self.get_serializer(version).data)

    @extend_schema(request=None, responses={201: ProtocolVersionSerializer})
    @action(detail=True, methods=["post"])
    def draft(self, request: Request, pk: str | None = None) -> Response:
        """Start a new draft of this version's protocol, copying this version."""
        version = self.get_object()
        draft = _run(versioning.start_draft, protocol=version.protocol, from_version=version, by=request.user)
        return Response(self.get_serializer(draft).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("against", int, required=True, description="The older version to compare with.")],
        responses={200: dict},
    )
    @action(detail=True, methods=["get"])
    def diff(self, request: Request, pk: str | None = None) -> Response:
        """What changed from version ``against`` to this one: steps added, removed and changed, rule edits."""
        version = self.get_object()
        against = request.query_params.get("against", "")
        against_id = row_id(against)
        if against_id is None:
            raise serializers.ValidationError({"against": "Give the id of the version to compare with."})
        older = get_object_or_404(self.get_queryset(), pk=against_id)
        diff = _run(versioning.step_diff, old=older, new=version)
        return Response(_diff_data(diff))


def _diff_data(diff: versioning.VersionDiff) -> dict[str, Any]:
    def step(step: ProtocolStep) -> dict[str, Any]:
        return {"id": step.pk, "lineage": str(step.lineage), "title": step.title, "kind": step.kind}

    def changes(items: list[versioning.FieldChange]) -> list[dict[str, str]]:
        return [{"field": c.field, "old": c.old, "new": c.new} for c in items]

    return {
        "old": diff.old.pk, "new": diff.new.pk,
        "added": [step(s) for s in diff.added],
        "removed": [step(s) for s in diff.removed],
        "changed": [{**step(c.new), "changes": changes(c.changes)} for c in diff.changed],
        "unchanged": [step(s) for s in diff.unchanged],
        "settings": changes(diff.settings),
        "added_rules": {"gained": [r.code for r in diff.added_rules.gained], "lost": [r.code for r in diff.added_rules.lost]},
        "removed_rules": {
            "gained": [r.code for r in diff.removed_rules.gained], "lost": [r.code for r in diff.removed_rules.lost],
        },
    }


class StepFilter(ApiFilterSet):
    class Meta:
        model = ProtocolStep
        fields = ["version", "kind"]


class ProtocolStepViewSet(ScopedModelViewSet):
    """Steps of a draft version; a published version's steps are read-only."""

    queryset = ProtocolStep.objects.select_related("version__protocol", "product")
    serializer_class = ProtocolStepSerializer
    filterset_class = StepFilter
    write_capability = EDIT
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def perform_create(self, serializer: ProtocolStepSerializer) -> None:
        _run(serializer.save)

    def perform_update(self, serializer: ProtocolStepSerializer) -> None:
        _run(serializer.save)

    def perform_destroy(self, instance: ProtocolStep) -> None:
        _run(instance.delete)


router.register("protocols", ProtocolViewSet, basename="protocol")
router.register("protocol-versions", ProtocolVersionViewSet, basename="protocol-version")
router.register("protocol-steps", ProtocolStepViewSet, basename="protocol-step")
router.register("products", ExosomeProductViewSet, basename="product")
router.register("lots", ProductLotViewSet, basename="lot")
router.register("contraindication-rules", ContraindicationRuleViewSet, basename="contraindication-rule")
