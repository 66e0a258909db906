"""API endpoints: patients, their intakes and screenings, and screening overrides.

Thin: serializers validate shapes, the services in ``patients.patient_records``,
``patients.intake`` and ``patients.screenings`` decide.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from clinic.api.base import ScopedModelViewSet, ScopedPrimaryKeyRelatedField, ScopedReadOnlyViewSet
from clinic.api.router import router
from clinic.api.strict import StrictModelSerializer, StrictSerializer
from clinic.audit import record_event, record_viewed
from clinic.models import Clinic
from clinic.roles import Capability
from patients import consent
from patients.intake import record_intake
from patients.models import Intake, Patient, Screening, ScreeningOverride
from patients.models.patient import patient_errors
from patients.patient_records import DuplicatePatientError, create_patient, record_patient_viewed
from patients.screenings import (
    OVERRIDE_REASON_MAX_LENGTH,
    OVERRIDE_REASON_MIN_LENGTH,
    SCREENING_MAX_DAYS_AHEAD,
    override_screening,
    run_screening,
)
from patients.treatments import recompute_for_new_time_zone
from protocols.models import ProtocolVersion


def as_drf_error(error: DjangoValidationError) -> serializers.ValidationError:
    """A service's Django ValidationError as a 400 with field errors."""
    if hasattr(error, "error_dict"):
        return serializers.ValidationError(error.message_dict)
    return serializers.ValidationError({"non_field_errors": error.messages})


# --- serializers ------------------------------------------------------------------


class PatientSerializer(StrictModelSerializer):
    clinic = ScopedPrimaryKeyRelatedField(queryset=Clinic.objects.all(), capability=Capability.EDIT_PATIENTS)
    confirm_duplicate = serializers.BooleanField(
        write_only=True, required=False, default=False,
        help_text="Create even though a patient with the same name and birth date, or email, exists.",
    )

    class Meta:
        model = Patient
        fields = [
            "id", "clinic", "reference", "given_name", "family_name", "date_of_birth", "email", "phone",
            "preferred_language", "time_zone", "fitzpatrick_type", "reminder_consent", "consent_at",
            "consent_source", "opted_out_at", "created_at", "confirm_duplicate",
        ]
        read_only_fields = ["opted_out_at", "created_at"]
        extra_kwargs = {"opted_out_at": {"help_text": (
            "When the patient unsubscribed. While set, no reminder is sent whatever reminder_consent says; "
            "it is cleared only by POST /api/v1/patients/{id}/renew-consent/."
        )}}

    def validate_clinic(self, clinic: Clinic) -> Clinic:
        if self.instance is not None and clinic.pk != self.instance.clinic_id:
            raise serializers.ValidationError("A patient cannot be moved to another clinic.")
        return clinic

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The model's rules, on the values after this write: an update saves without Patient.full_clean().
        def merged(name: str) -> Any:
            if name in attrs:
                return attrs[name]
            if self.instance is not None:
                return getattr(self.instance, name)
            return Patient._meta.get_field(name).get_default()

        errors = patient_errors(
            clinic_zone=merged("clinic").time_zone, date_of_birth=merged("date_of_birth"),
            reminder_consent=merged("reminder_consent"), consent_at=merged("consent_at"),
            consent_source=merged("consent_source"),
        )
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class IntakeSerializer(StrictModelSerializer):
    effective_at = serializers.DateTimeField(read_only=True)

    class Meta:
        model = Intake
        fields = ["id", "patient", "answered_at", "answers", "source", "recorded_by", "confirmed_at",
                  "confirmed_by", "effective_at", "created_at"]
        read_only_fields = ["patient", "source", "recorded_by", "confirmed_at", "confirmed_by", "created_at"]
        # The answers are the intake: a request without them is refused, not stored as an empty intake.
        extra_kwargs = {"answered_at": {"required": False}, "answers": {"required": True}}


class OverrideSerializer(serializers.ModelSerializer):
    class Meta:
        model = ScreeningOverride
        fields = ["id", "screening", "reason", "clinician", "created_at"]
        read_only_fields = ["screening", "clinician", "created_at"]


class ScreeningSerializer(serializers.ModelSerializer):
    override = serializers.SerializerMethodField()

    class Meta:
        model = Screening
        fields = ["id", "patient", "protocol_version", "intake", "planned_for", "outcome", "findings",
                  "run_by", "run_at", "override"]
        read_only_fields = fields

    def get_override(self, screening: Screening) -> dict[str, Any] | None:
        # Lists load each screening's override with it (select_related); one
        # screening on its own asks the database, which knows about an
        # override recorded after the screening was loaded.
        relation = Screening._meta.get_field("override")
        if relation.is_cached(screening):
            override = relation.get_cached_value(screening)
        else:
            override = ScreeningOverride.objects.filter(screening=screening).first()
        return None if override is None else OverrideSerializer(override).data


class RunScreeningSerializer(StrictSerializer):
    protocol_version = ScopedPrimaryKeyRelatedField(queryset=ProtocolVersion.objects.select_related("protocol"))
    planned_for = serializers.DateField(help_text=(
        "The day of the procedure on the clinic's clock: today or later, at most "
        f"{SCREENING_MAX_DAYS_AHEAD} days ahead (400 otherwise)."
    ))
    intake = ScopedPrimaryKeyRelatedField(queryset=Intake.objects.all(), required=False, allow_null=True)


class RenewConsentSerializer(StrictSerializer):
    consent_at = serializers.DateTimeField(help_text="When the patient consented again: not in the future, "
                                           "not before they unsubscribed.")
    consent_source = serializers.ChoiceField(choices=Patient.ConsentSource.choices)


class OverrideRequestSerializer(StrictSerializer):
    reason = serializers.CharField(
        allow_blank=False, trim_whitespace=True,
        help_text=(f"Why the treatment may go ahead despite the findings ({OVERRIDE_REASON_MIN_LENGTH} to "
                   f"{OVERRIDE_REASON_MAX_LENGTH} characters)."),
    )


# --- views -----------------------------------------------------------------------------


class PatientViewSet(ScopedModelViewSet):
    """Patients of the clinics you belong to; nested intakes and screenings."""

    queryset = Patient.objects.select_related("clinic")
    serializer_class = PatientSerializer
    write_capability = Capability.EDIT_PATIENTS
    action_capabilities = {
        "screenings": Capability.SCREEN, "intakes": Capability.EDIT_PATIENTS, "renew_consent": Capability.EDIT_PATIENTS,
    }
    filterset_fields = ["clinic", "email", "date_of_birth"]
    log_lists = True  # a page of patients is in the access log ("list"), as is each patient read

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        confirm = data.pop("confirm_duplicate", False) or request.query_params.get("confirm_duplicate") == "true"
        try:
            patient = create_patient(data=data, created_by=request.user, confirm_duplicate=confirm, request=request)
        except DuplicatePatientError as error:
            return Response(
                {"confirm_duplicate": [str(error.messages[0])], "duplicate_of": [p.pk for p in error.duplicates]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        except DjangoValidationError as error:
            raise as_drf_error(error) from None
        return Response(self.get_serializer(patient).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer: PatientSerializer) -> None:
        serializer.validated_data.pop("confirm_duplicate", None)
        previous_zone = serializer.instance.time_zone
        with transaction.atomic():
            patient = serializer.save()
            # Reminders not yet sent follow the patient's clock: a corrected zone moves them.
            recompute_for_new_time_zone(
                patient=patient, previous_zone=previous_zone, by=self.request.user, request=self.request
            )

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        patient = self.get_object()
        record_patient_viewed(patient=patient, viewer=request.user, request=request)
        return Response(self.get_serializer(patient).data)

    # Nested lists are neither filtered nor paginated: the patient's filters do not apply to them.
    @extend_schema(methods=["GET"], responses=IntakeSerializer(many=True))
    @extend_schema(methods=["POST"], request=IntakeSerializer, responses={201: IntakeSerializer})
    @action(detail=True, methods=["get", "post"], filter_backends=[], pagination_class=None)
    def intakes(self, request: Request, pk: str | None = None) -> Response:
        patient = self.get_object()
        if request.method == "GET":
            intakes = list(patient.intakes.order_by("-answered_at", "-pk"))
            record_viewed(request=request, action="intake.view", obj=patient, rows=intakes)
            return Response(IntakeSerializer(intakes, many=True).data)
        serializer = IntakeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            intake = record_intake(
                patient=patient, answers=serializer.validated_data.get("answers", {}), recorded_by=request.user,
                answered_at=serializer.validated_data.get("answered_at"), request=request,
            )
        except DjangoValidationError as error:
            errors = error.message_dict
            # Fact-keyed problems are errors of the "answers" field.
            raise serializers.ValidationError(
                errors if set(errors) <= {"answers", "answered_at"} else {"answers": errors}
            ) from None
        return Response(IntakeSerializer(intake).data, status=status.HTTP_201_CREATED)

    @extend_schema(methods=["GET"], responses=ScreeningSerializer(many=True))
    @extend_schema(methods=["POST"], request=RunScreeningSerializer, responses={201: ScreeningSerializer})
    @action(detail=True, methods=["get", "post"], filter_backends=[], pagination_class=None)
    def screenings(self, request: Request, pk: str | None = None) -> Response:
        patient = self.get_object()
        if request.method == "GET":
            screenings = list(
                Screening.objects.filter(patient=patient).select_related("override").order_by("-run_at", "-pk")
            )
            record_viewed(request=request, action="screening.view", obj=patient, rows=screenings)
            return Response(ScreeningSerializer(screenings, many=True).data)
        serializer = RunScreeningSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        try:
            screening = run_screening(patient=patient, run_by=request.user, request=request, **serializer.validated_data)
        except DjangoValidationError as error:
            raise as_drf_error(error) from None
        return Response(ScreeningSerializer(screening).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=RenewConsentSerializer, responses=PatientSerializer,
        description="Record that a patient who unsubscribed consented to reminder emails again: clears "
        "opted_out_at and sets the consent fields. Reminders skipped while they were unsubscribed stay skipped; "
        "later ones are sent. 400 if the patient has not unsubscribed or the consent is not valid.",
    )
    @action(detail=True, methods=["post"], url_path="renew-consent")
    def renew_consent(self, request: Request, pk: str | None = None) -> Response:
        patient = self.get_object()
        serializer = RenewConsentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            consent.renew_consent(patient=patient, recorded_by=request.user, request=request, **serializer.validated_data)
        except DjangoValidationError as error:
            raise as_drf_error(error) from None
        return Response(self.get_serializer(patient).data)


class ScreeningViewSet(ScopedReadOnlyViewSet):
    """Screenings are read-only records; the only write is a clinician's override."""

    queryset = Screening.objects.select_related("patient", "protocol_version", "override")
    serializer_class = ScreeningSerializer
    action_capabilities = {"override": Capability.OVERRIDE_SCREENING}
    filterset_fields = ["patient", "outcome", "protocol_version"]
    log_lists = True

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        screening = self.get_object()
        record_event(actor=request.user, action="screening.view", clinic=screening.patient.clinic, obj=screening,
                     request=request)
        return Response(self.get_serializer(screening).data)

    @extend_schema(request=OverrideRequestSerializer, responses={201: OverrideSerializer})
    @action(detail=True, methods=["post"])
    def override(self, request: Request, pk: str | None = None) -> Response:
        screening = self.get_object()
        serializer = OverrideRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            override = override_screening(
                screening=screening, clinician=request.user, reason=serializer.validated_data["reason"],
                request=request,
            )
        except DjangoValidationError as error:
            raise as_drf_error(error) from None
        return Response(OverrideSerializer(override).data, status=status.HTTP_201_CREATED)


router.register("patients", PatientViewSet, basename="patient")
router.register("screenings", ScreeningViewSet, basename="screening")
