"""API endpoints: treatments (recorded through the service), their timelines, and the reminder outbox.

Thin: serializers check shapes and scoping, ``patients.treatments`` decides.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from clinic.api.base import ScopedModelViewSet, ScopedPrimaryKeyRelatedField, ScopedReadOnlyViewSet
from clinic.api.filters import ApiFilterSet, IdFilter
from clinic.api.router import router
from clinic.api.strict import StrictSerializer
from clinic.audit import record_viewed
from clinic.reasons import REASON_MAX_LENGTH
from clinic.roles import Capability
from patients import treatments
from patients.models import ExosomeApplication, Patient, Reminder, Screening, Treatment, TreatmentArm
from protocols.models import ExosomeProduct, ProductLot, ProtocolVersion


def as_drf_error(error: DjangoValidationError) -> serializers.ValidationError:
    """A service's Django ValidationError as a 400 with field errors."""
    if hasattr(error, "error_dict"):
        return serializers.ValidationError(error.message_dict)
    return serializers.ValidationError({"non_field_errors": error.messages})


# --- serializers ------------------------------------------------------------------


class ArmSerializer(serializers.ModelSerializer):
    class Meta:
        model = TreatmentArm
        fields = ["id", "label", "is_control", "control_description", "product"]


class ApplicationSerializer(serializers.ModelSerializer):
    lot_number = serializers.CharField(source="lot.lot_number", read_only=True)
    lot_recalled_at = serializers.SerializerMethodField(
        help_text="When the lot was recalled (after this application: it could not be recorded otherwise); "
        "null while it is not. The patient is then on the lot's recall list."
    )

    class Meta:
        model = ExosomeApplication
        fields = [
            "id", "arm", "lot", "lot_number", "lot_recalled_at", "volume_ml", "minutes_after_procedure", "applied_by",
        ]

    def get_lot_recalled_at(self, application: ExosomeApplication) -> dt.datetime | None:
        return application.lot.recalled_at if application.lot.recalled else None


class TreatmentSerializer(serializers.ModelSerializer):
    arms = ArmSerializer(many=True, read_only=True)
    applications = ApplicationSerializer(many=True, read_only=True)

    class Meta:
        model = Treatment
        fields = [
            "id", "clinic", "patient", "protocol_version", "screening", "clinician", "started_at", "ended_at",
            "areas", "device", "needle_depth_mm", "energy", "density", "passes", "settings_notes", "status",
            "cancelled_at", "cancelled_by", "cancel_reason", "created_at", "arms", "applications",
        ]
        read_only_fields = fields


class ArmInputSerializer(StrictSerializer):
    label = serializers.CharField(max_length=40)
    is_control = serializers.BooleanField(default=False)
    product = ScopedPrimaryKeyRelatedField(queryset=ExosomeProduct.objects.all(), required=False, allow_null=True)
    control_description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class ApplicationInputSerializer(StrictSerializer):
    lot = ScopedPrimaryKeyRelatedField(queryset=ProductLot.objects.select_related("product"))
    volume_ml = serializers.DecimalField(
        max_digits=5, decimal_places=2,
        help_text=f"More than 0, at most {treatments.MAX_APPLICATION_VOLUME_ML} ml (else a 400 naming the application).",
    )
    minutes_after_procedure = serializers.IntegerField(
        min_value=0, default=0,
        help_text=f"In clinic, during the visit: at most {treatments.MAX_APPLICATION_MINUTES_AFTER} (24 hours).",
    )
    arm = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")


class RecordTreatmentSerializer(StrictSerializer):
    patient = ScopedPrimaryKeyRelatedField(
        queryset=Patient.objects.select_related("clinic"), capability=Capability.RECORD_TREATMENT
    )
    protocol_version = ScopedPrimaryKeyRelatedField(queryset=ProtocolVersion.objects.select_related("protocol"))
    screening = ScopedPrimaryKeyRelatedField(queryset=Screening.objects.all())
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField()
    areas = serializers.CharField(max_length=200)
    device = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    needle_depth_mm = serializers.DecimalField(max_digits=4, decimal_places=2, required=False, allow_null=True)
    energy = serializers.CharField(max_length=60, required=False, allow_blank=True, default="")
    density = serializers.CharField(max_length=60, required=False, allow_blank=True, default="")
    passes = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    settings_notes = serializers.CharField(required=False, allow_blank=True, default="")
    applications = ApplicationInputSerializer(many=True, required=False, default=list)
    arms = ArmInputSerializer(many=True, required=False, default=list)


class RescheduleSerializer(StrictSerializer):
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField()


class CancelSerializer(StrictSerializer):
    reason = serializers.CharField(
        allow_blank=False, trim_whitespace=True,
        help_text=f"Why the treatment is cancelled ({treatments.CANCEL_REASON_MIN_LENGTH} to {REASON_MAX_LENGTH} characters).",
    )


class MoveVisitSerializer(StrictSerializer):
    occurs_at = serializers.DateTimeField(  # without its offset, refused by StrictSerializer
        help_text="The visit's new time, with its offset (e.g. 2026-05-07T10:00:00+01:00); still to come. "
        "A time without an offset is refused."
    )
    reason = serializers.CharField(
        max_length=treatments.MOVE_REASON_MAX_LENGTH, trim_whitespace=True,
        help_text=(f"Why the visit moves ({treatments.MOVE_REASON_MIN_LENGTH} to {treatments.MOVE_REASON_MAX_LENGTH} "
                   "characters)."),
    )
    confirm_time = serializers.BooleanField(
        required=False, default=False,
        help_text="Move the visit even though its reminder would go out after it (quiet hours) or it is at night "
        "on the clinic's clock; without it such a move is refused with a 400 saying why.",
    )


class ReminderSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="treatment.patient_id", read_only=True)
    step_title = serializers.CharField(source="step.title", read_only=True)
    step_kind = serializers.CharField(source="step.kind", read_only=True)
    # Empty until the reminder is first resent: the schema says so (a read-only model field's does not).
    previous_status = serializers.ChoiceField(choices=Reminder.Status.choices, allow_blank=True, read_only=True)

    class Meta:
        model = Reminder
        fields = [
            "id", "treatment", "patient", "step", "step_title", "step_kind", "occurrence", "occurs_at", "due_at",
            "status", "attempts", "last_attempt_at", "last_error", "queued_at", "sent_at", "done_at",
            "resend_count", "previous_status", "previous_attempts", "previous_attempt_at", "previous_sent_at",
            "previous_error", "moved_at", "moved_from", "move_reason", "move_count", "created_at", "updated_at",
        ]
        read_only_fields = fields


class TimelineEntrySerializer(serializers.Serializer):
    step = serializers.IntegerField(source="step.pk")
    step_title = serializers.CharField(source="step.title")
    step_kind = serializers.CharField(source="step.kind")
    occurrence = serializers.IntegerField()
    occurs_at = serializers.DateTimeField(
        help_text="When the step happens: for an in-clinic exosome application with a recorded application, "
        "the recorded time (time_source \"recorded\"), else the protocol's planned time."
    )
    planned_at = serializers.DateTimeField(help_text="When the protocol plans the step.")
    time_source = serializers.ChoiceField(
        choices=[(treatments.PLANNED, "Planned by the protocol"), (treatments.RECORDED, "Recorded application")],
        help_text="Where occurs_at comes from.",
    )
    due_at = serializers.DateTimeField(allow_null=True)
    avoid_until = serializers.DateField(
        allow_null=True, help_text="For an avoidance step: the patient-local date of its 'avoid until' day."
    )
    state = serializers.CharField()
    state_label = serializers.CharField()
    reminder = ReminderSerializer(allow_null=True)


# --- views ------------------------------------------------------------------------------


class TreatmentViewSet(ScopedModelViewSet):
    """Treatments of your clinics. POST records one (clinicians only) with its reminder timeline."""

    queryset = Treatment.objects.select_related("patient", "protocol_version").prefetch_related(
        "arms", "applications__lot"
    )
    serializer_class = TreatmentSerializer
    http_method_names = ["get", "post", "head", "options"]
    write_capability = Capability.RECORD_TREATMENT
    filterset_fields = ["patient", "status", "protocol_version"]
    log_views = True  # device settings and lots of one patient's procedure, as on the admin's page
    log_lists = True

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return RecordTreatmentSerializer if self.action == "create" else TreatmentSerializer

    @extend_schema(request=RecordTreatmentSerializer, responses={201: TreatmentSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = RecordTreatmentSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        applications = [
            treatments.ApplicationInput(
                lot=item["lot"], volume_ml=item["volume_ml"], minutes_after_procedure=item["minutes_after_procedure"],
                arm_label=item["arm"],
            )
            for item in data.pop("applications")
        ]
        arms = [treatments.ArmInput(**item) for item in data.pop("arms")]
        try:
            treatment = treatments.record_treatment(
                clinician=request.user, applications=applications, arms=arms, request=request, **data
            )
        except DjangoValidationError as error:
            raise as_drf_error(error) from None
        return Response(TreatmentSerializer(treatment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=TimelineEntrySerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def timeline(self, request: Request, pk: str | None = None) -> Response:
        treatment = self.get_object()
        timeline = treatments.timeline_for(treatment=treatment)
        reminders = [entry.reminder for entry in timeline if entry.reminder is not None]
        record_viewed(request=request, action="view", obj=treatment, rows=reminders, detail={"page": "timeline"})
        return Response(TimelineEntrySerializer(timeline, many=True).data)

    @extend_schema(request=RescheduleSerializer, responses=TreatmentSerializer)
    @action(detail=True, methods=["post"])
    def reschedule(self, request: Request, pk: str | None = None) -> Response:
        treatment = self.get_object()
        serializer = RescheduleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            treatments.reschedule_treatment(treatment=treatment, by=request.user, request=request, **serializer.validated_data)
        except DjangoValidationError as error:
            raise as_drf_error(error) from None
        return Response(TreatmentSerializer(self.get_object()).data)

    @extend_schema(request=CancelSerializer, responses=TreatmentSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        treatment = self.get_object()
        serializer = CancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            treatments.cancel_treatment(
                treatment=treatment, by=request.user, reason=serializer.validated_data["reason"], request=request
            )
        except DjangoValidationError as error:
            raise as_drf_error(error) from None
        return Response(TreatmentSerializer(self.get_object()).data)


class ReminderFilter(ApiFilterSet):
    treatment = IdFilter(field_name="treatment_id")
    patient = IdFilter(field_name="treatment__patient_id")
    due_after = django_filters.IsoDateTimeFilter(field_name="due_at", lookup_expr="gte")
    due_before = django_filters.IsoDateTimeFilter(field_name="due_at", lookup_expr="lt")

    class Meta:
        model = Reminder
        fields = ["status", "treatment", "patient", "due_after", "due_before"]


class ReminderViewSet(ScopedReadOnlyViewSet):
    """The reminder outbox of your clinics (read-only), with resend and cancel of one reminder, and moving one
    follow-up visit."""

    queryset = Reminder.objects.select_related("step", "treatment").order_by("due_at", "pk")
    serializer_class = ReminderSerializer
    filterset_class = ReminderFilter
    action_capabilities = {
        "resend": Capability.MANAGE_REMINDERS, "cancel": Capability.MANAGE_REMINDERS,
        "move_visit": Capability.MANAGE_REMINDERS,
    }
    log_views = True
    log_lists = True

    @extend_schema(request=None, responses=ReminderSerializer)
    @action(detail=True, methods=["post"])
    def resend(self, request: Request, pk: str | None = None) -> Response:
        try:
            reminder = treatments.resend_reminder(reminder=self.get_object(), by=request.user, request=request)
        except DjangoValidationError as error:
            raise as_drf_error(error) from None
        return Response(ReminderSerializer(reminder).data)

    @extend_schema(request=None, responses=ReminderSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        try:
            reminder = treatments.cancel_reminder(reminder=self.get_object(), by=request.user, request=request)
        except DjangoValidationError as error:
            raise as_drf_error(error) from None
        return Response(ReminderSerializer(reminder).data)


    @extend_schema(
        request=MoveVisitSerializer, responses=ReminderSerializer,
        description="Move one follow-up visit (the patient rebooked): its reminder is timed before the new time; "
        "one already sent goes out again, its invitation moving the event. A recomputed timeline keeps the visit "
        "at this time. 400 for another step kind, a cancelled treatment, a reminder that failed, was skipped or "
        "cancelled, a past time, a time without its offset from UTC, or more than "
        f"{treatments.MOVE_MAX_DAYS_AFTER_PROCEDURE} days after the procedure; also, unless confirm_time is true, a "
        "time whose reminder the quiet hours would hold back until after the visit, or at night on the clinic's "
        f"clock (before {treatments.NIGHT_BEFORE:%H:%M} or after {treatments.NIGHT_AFTER:%H:%M}).",
    )
    @action(detail=True, methods=["post"], url_path="move-visit")
    def move_visit(self, request: Request, pk: str | None = None) -> Response:
        reminder = self.get_object()
        serializer = MoveVisitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            reminder = treatments.move_visit(
                reminder=reminder, by=request.user, request=request, **serializer.validated_data
            )
        except DjangoValidationError as error:
            raise as_drf_error(error) from None
        return Response(ReminderSerializer(reminder).data)


router.register("treatments", TreatmentViewSet, basename="treatment")
router.register("reminders", ReminderViewSet, basename="reminder")
