"""API endpoints: outcome assessments, adverse events, a treatment's outcomes, and protocol reports.

``/api/v1/outcomes/``, ``/api/v1/adverse-events/``, ``/api/v1/treatments/{id}/outcomes/`` and
``/api/v1/reports/protocols/{id}/``.  Thin: serializers check shapes and
scoping; ``patients.outcomes`` decides and records, ``patients.review`` counts.
Writes need ``Capability.LOG_OUTCOMES``; reads any role in the row's clinic.
Problems patients flagged are outcomes too: ``?problem_flag=open`` lists those
no one has reviewed, and ``POST /api/v1/outcomes/{id}/review-flag/`` reviews one
(whoever ``outcomes.may_review_flags`` allows: clinicians, coordinators, clinic admins).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import django_filters
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.exceptions import PermissionDenied as DrfPermissionDenied
from rest_framework.generics import get_object_or_404  # 404, not 500, for an id that is not a number
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from clinic.api.base import ScopedModelViewSet, ScopedPrimaryKeyRelatedField
from clinic.api.filters import ApiFilterSet, IdFilter
from clinic.api.permissions import IsClinicStaff
from clinic.api.router import router
from clinic.api.schema import ErrorDetailSerializer
from clinic.api.strict import StrictModelSerializer, StrictSerializer
from clinic.audit import record_viewed
from clinic.ids import row_id
from clinic.roles import Capability
from clinic.scoping import clinic_of, scoped
from patients import outcomes
from patients.measures import measures_for_treatment
from patients.models import AdverseEvent, OutcomeAssessment, Treatment, TreatmentArm
from patients.review import GroupSummary, compare_protocols, parse_filters, protocol_report, split_face_comparison
from protocols.models import Protocol


def _as_drf_error(error: DjangoValidationError) -> serializers.ValidationError:
    """A service's Django ValidationError as a 400 with field errors."""
    if hasattr(error, "error_dict"):
        return serializers.ValidationError(error.message_dict)
    return serializers.ValidationError({"non_field_errors": error.messages})


class Conflict(APIException):
    """409: the request clashes with what is recorded now (changed since read, or already recorded); nothing changed."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class RevisionField(serializers.IntegerField):
    """The record's revision (``outcomes.current_revision``): read it with the record, send it back with a PATCH."""

    def __init__(self) -> None:
        super().__init__(
            required=False, min_value=0,
            help_text="How many times the record has been saved (1 when recorded). Required when correcting (PATCH): "
                      "send the revision you read; if the record has changed since, nothing is saved and the answer "
                      "is 409. Ignored when recording (POST).",
        )

    def get_attribute(self, instance: Any) -> int:
        revision = getattr(instance, "revision", None)  # annotated by outcomes.with_revisions on lists
        return outcomes.current_revision(instance) if revision is None else revision


REVISION_REQUIRED = "Send the revision you read (GET the record), so a colleague's change made since is not undone."
CHANGED_SINCE_READ = OpenApiResponse(
    ErrorDetailSerializer,
    description="The record changed after the revision you sent (who, when, why in detail); nothing was saved. "
                "GET it again, then send your correction with its new revision.",
)


def _correct(correction: Any, *, revision: int | None, **kwargs: Any) -> Any:
    """Call an ``outcomes.correct_*`` service for a PATCH: a revision is required, and a stale one is a 409."""
    if revision is None:
        raise serializers.ValidationError({"revision": [REVISION_REQUIRED]})
    try:
        saved = correction(based_on=revision, **kwargs)
    except outcomes.ChangedSinceOpened as error:
        raise Conflict({"detail": error.message}) from None
    except DjangoValidationError as error:
        raise _as_drf_error(error) from None
    vars(saved).pop("revision", None)  # the revision read with the request is not the saved one's
    return saved


def _score() -> serializers.IntegerField:
    # Plain integers: the service checks the scale and names it in its message.
    return serializers.IntegerField(required=False, allow_null=True)


# --- assessments ------------------------------------------------------------------------------------


class OutcomeAssessmentSerializer(StrictModelSerializer):
    treatment = ScopedPrimaryKeyRelatedField(queryset=Treatment.objects.all(), capability=Capability.LOG_OUTCOMES)
    arm = ScopedPrimaryKeyRelatedField(queryset=TreatmentArm.objects.all(), required=False, allow_null=True)
    time_point_day = serializers.IntegerField()
    phase = serializers.ChoiceField(choices=OutcomeAssessment.Phase.choices, required=False, allow_blank=True)
    erythema = _score()
    erythema_words = serializers.CharField(source="get_erythema_display", read_only=True, allow_null=True)
    oedema = _score()
    pain = _score()
    pruritus = _score()
    gais = _score()
    reepithelialisation_percent = _score()
    photos = serializers.SerializerMethodField()
    correction_reason = serializers.CharField(
        write_only=True, required=False, allow_blank=True,
        help_text=f"Required when correcting (PATCH): why, in {outcomes.REASON_MIN_LENGTH} to "
                  f"{outcomes.REASON_MAX_LENGTH} characters.",
    )
    revision = RevisionField()

    class Meta:
        model = OutcomeAssessment
        fields = [
            "id", "treatment", "arm", "time_point_day", "phase", "source", "erythema", "erythema_words", "oedema",
            "reepithelialisation_complete", "reepithelialisation_percent", "pain", "pruritus", "gais",
            "applied_as_instructed", "problem_flagged", "flag_reviewed_at", "flag_reviewed_by", "flag_review_note",
            "notes", "recorded_by", "recorded_at", "photos", "correction_reason", "revision",
        ]
        read_only_fields = [
            "source", "recorded_by", "recorded_at", "applied_as_instructed", "problem_flagged",
            "flag_reviewed_at", "flag_reviewed_by", "flag_review_note",
        ]

    def get_validators(self) -> list[Any]:
        return []  # "one entry per time point" is the service's rule, with its own message

    @extend_schema_field({"type": "array", "items": {"type": "string", "format": "uri"}})
    def get_photos(self, assessment: OutcomeAssessment) -> list[str]:
        """Staff download URLs (the session or token must belong to the photo's clinic)."""
        return [reverse("patients:photo-download", args=[photo.pk]) for photo in assessment.photos.all()]


CLINICIAN_FIELDS = [
    "erythema", "oedema", "reepithelialisation_complete", "reepithelialisation_percent", "pain", "pruritus", "gais", "notes",
]


class OutcomeFilter(ApiFilterSet):
    # Ids, not model choices: a choice filter would answer "not a valid choice"
    # for another clinic's treatment and so reveal which ids exist.
    treatment = IdFilter(field_name="treatment_id")
    arm = IdFilter(field_name="arm_id")
    clinic = IdFilter(field_name="treatment__clinic_id")
    problem_flag = django_filters.ChoiceFilter(
        choices=[("open", "Not reviewed yet"), ("reviewed", "Reviewed")], method="filter_problem_flag",
        help_text="Self-reports in which the patient flagged a problem: open (no one has reviewed it yet) or reviewed.",
    )

    class Meta:
        model = OutcomeAssessment
        fields = ["treatment", "arm", "clinic", "source", "time_point_day", "problem_flag"]

    def filter_problem_flag(self, queryset: Any, name: str, value: str) -> Any:
        flagged = queryset.filter(source=OutcomeAssessment.Source.PATIENT, problem_flagged=True)
        return flagged.filter(flag_reviewed_at__isnull=value == "open")


class FlagReviewSerializer(StrictSerializer):
    note = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=outcomes.REVIEW_NOTE_MAX_LENGTH,
        error_messages={"max_length": f"Keep the note to {outcomes.REVIEW_NOTE_MAX_LENGTH} characters."},
        help_text="What the reviewer did about the problem (optional), kept with the review.",
    )


class MayReviewProblemFlags(BasePermission):
    """Reviewing a patient's problem: whom ``outcomes.may_review_flags`` allows in the report's clinic.

    Clinicians and those who manage reminders (coordinators, clinic admins), so not the view's
    ``write_capability`` (clinicians only).
    """

    message = "Only clinicians and staff who manage reminders may review a problem a patient flagged."

    def has_permission(self, request: Request, view: Any) -> bool:
        return outcomes.may_review_flags_somewhere(request.user)

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        clinic = clinic_of(obj)
        return clinic is not None and outcomes.may_review_flags(request.user, clinic)


ALREADY_REVIEWED = OpenApiResponse(
    ErrorDetailSerializer,
    description="Someone already reviewed this problem (who and when in detail); their review and note stay, "
                "nothing was changed.",
)


@extend_schema_view(partial_update=extend_schema(responses={200: OutcomeAssessmentSerializer, 409: CHANGED_SINCE_READ}))
class OutcomeAssessmentViewSet(ScopedModelViewSet):
    """Clinician and patient-reported outcome assessments. POST records; PATCH corrects (history keeps the original).

    A PATCH carries the ``revision`` it read; if the entry changed since, nothing is saved (409).
    ``?problem_flag=open`` lists the problems patients flagged that no one has reviewed yet.
    """

    queryset = OutcomeAssessment.objects.prefetch_related("photos").order_by("treatment_id", "time_point_day", "phase", "pk")
    serializer_class = OutcomeAssessmentSerializer
    write_capability = Capability.LOG_OUTCOMES
    # Any staff role gets past IsClinicStaff; MayReviewProblemFlags (on the action) decides who reviews.
    action_capabilities = {"review_flag": Capability.VIEW}
    filterset_class = OutcomeFilter
    http_method_names = ["get", "post", "patch", "head", "options"]
    log_views = True  # a patient's clinical record, as on the admin's page
    log_lists = True

    def get_queryset(self) -> Any:
        return outcomes.with_revisions(super().get_queryset())

    def perform_create(self, serializer: OutcomeAssessmentSerializer) -> None:
        data = serializer.validated_data
        scores = {name: data[name] for name in CLINICIAN_FIELDS if name in data}
        try:
            serializer.instance = outcomes.record_assessment(
                treatment=data["treatment"], by=self.request.user, time_point_day=data["time_point_day"],
                scores=scores, arm=data.get("arm"), phase=data.get("phase") or "",
            )
        except DjangoValidationError as error:
            raise _as_drf_error(error) from None

    def perform_update(self, serializer: OutcomeAssessmentSerializer) -> None:
        data = dict(serializer.validated_data)
        reason = data.pop("correction_reason", "")
        revision = data.pop("revision", None)
        if "treatment" in data and data.pop("treatment") != serializer.instance.treatment:
            raise serializers.ValidationError({"treatment": "An entry cannot move to another treatment."})
        serializer.instance = _correct(
            outcomes.correct_assessment, revision=revision, assessment=serializer.instance, by=self.request.user,
            changes=data, reason=reason,
        )

    @extend_schema(request=FlagReviewSerializer, responses={200: OutcomeAssessmentSerializer, 409: ALREADY_REVIEWED})
    @action(
        detail=True, methods=["post"], url_path="review-flag", filter_backends=[],
        permission_classes=[IsClinicStaff, MayReviewProblemFlags],
    )
    def review_flag(self, request: Request, pk: str | None = None) -> Response:
        """Mark the problem the patient flagged in this self-report reviewed, with an optional note.

        The first review stays: reviewing again is a 409 and changes nothing.
        """
        report = self.get_object()
        serializer = FlagReviewSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            reviewed = outcomes.review_problem_flag(
                assessment=report, by=request.user, note=serializer.validated_data["note"], request=request
            )
        except DjangoPermissionDenied as error:
            raise DrfPermissionDenied(str(error)) from None
        except DjangoValidationError as error:
            raise _as_drf_error(error) from None
        if not reviewed:
            by = report.flag_reviewed_by
            name = (by.get_full_name() or by.get_username()) if by is not None else "someone"
            when = serializers.DateTimeField().to_representation(report.flag_reviewed_at)
            raise Conflict({"detail": (
                f"This problem was already reviewed by {name} at {when}; that review and its note stay, "
                "and nothing was changed."
            )})
        vars(report).pop("revision", None)  # the revision read with the request is not the reviewed one's
        return Response(OutcomeAssessmentSerializer(report, context=self.get_serializer_context()).data)


# --- adverse events ------------------------------------------------------------------------------------


class AdverseEventSerializer(StrictModelSerializer):
    treatment = ScopedPrimaryKeyRelatedField(queryset=Treatment.objects.all(), capability=Capability.LOG_OUTCOMES)
    arm = ScopedPrimaryKeyRelatedField(queryset=TreatmentArm.objects.all(), required=False, allow_null=True)
    kind = serializers.CharField(help_text=f"One of: {', '.join(AdverseEvent.Kind.values)}")
    severity = serializers.CharField(help_text=f"One of: {', '.join(AdverseEvent.Severity.values)}")
    correction_reason = serializers.CharField(
        write_only=True, required=False, allow_blank=True,
        help_text=f"Required when correcting (PATCH): why, in {outcomes.REASON_MIN_LENGTH} to "
                  f"{outcomes.REASON_MAX_LENGTH} characters.",
    )
    revision = RevisionField()

    class Meta:
        model = AdverseEvent
        fields = [
            "id", "treatment", "arm", "kind", "severity", "onset_date", "resolution_date", "description",
            "action_taken", "recorded_by", "recorded_at", "notified_at", "correction_reason", "revision",
        ]
        read_only_fields = ["recorded_by", "recorded_at", "notified_at"]

    def get_validators(self) -> list[Any]:
        return []


class AdverseEventFilter(ApiFilterSet):
    treatment = IdFilter(field_name="treatment_id")

    class Meta:
        model = AdverseEvent
        fields = ["treatment", "kind", "severity"]


class AlreadyRecordedSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="Which event is already recorded, and what to do.")
    existing_event = serializers.CharField(help_text="The API address of the event already recorded.")


@extend_schema_view(
    create=extend_schema(responses={201: AdverseEventSerializer, 409: OpenApiResponse(
        AlreadyRecordedSerializer,
        description="The same event (kind, severity, onset, arm, description) is already recorded for this treatment, "
                    "e.g. by a retried request; nothing was saved and no one was emailed again.",
    )}),
    partial_update=extend_schema(responses={200: AdverseEventSerializer, 409: CHANGED_SINCE_READ}),
)
class AdverseEventViewSet(ScopedModelViewSet):
    """Adverse events. Moderate or worse emails the clinic's clinicians once recorded.

    Recording the same event twice is refused (409, naming the recorded one); a PATCH
    carries the ``revision`` it read, as for outcomes.
    """

    queryset = AdverseEvent.objects.order_by("-onset_date", "-pk")
    serializer_class = AdverseEventSerializer
    write_capability = Capability.LOG_OUTCOMES
    filterset_class = AdverseEventFilter
    http_method_names = ["get", "post", "patch", "head", "options"]
    log_views = True
    log_lists = True

    def get_queryset(self) -> Any:
        return outcomes.with_revisions(super().get_queryset())

    def perform_create(self, serializer: AdverseEventSerializer) -> None:
        data = dict(serializer.validated_data)
        data.pop("correction_reason", None)
        data.pop("revision", None)
        try:
            serializer.instance = outcomes.record_adverse_event(by=self.request.user, **data)
        except outcomes.AdverseEventAlreadyRecorded as error:
            existing = reverse("adverse-event-detail", args=[error.event.pk])
            raise Conflict({"detail": error.message, "existing_event": existing}) from None
        except DjangoValidationError as error:
            raise _as_drf_error(error) from None

    def perform_update(self, serializer: AdverseEventSerializer) -> None:
        data = dict(serializer.validated_data)
        reason = data.pop("correction_reason", "")
        revision = data.pop("revision", None)
        if "treatment" in data and data.pop("treatment") != serializer.instance.treatment:
            raise serializers.ValidationError({"treatment": "An event cannot move to another treatment."})
        serializer.instance = _correct(
            outcomes.correct_adverse_event, revision=revision, event=serializer.instance, by=self.request.user,
            changes=data, reason=reason,
        )


# --- a treatment's outcomes -------------------------------------------------------------------------------


class TreatmentOutcomesViewSet(viewsets.ViewSet):
    """Everything recorded about one treatment's healing, with its derived measures."""

    @extend_schema(
        parameters=[OpenApiParameter("treatment_id", OpenApiTypes.INT, OpenApiParameter.PATH)],
        responses=OpenApiTypes.OBJECT,
    )
    def list(self, request: Request, treatment_id: str) -> Response:
        treatment = get_object_or_404(
            scoped(Treatment.objects.select_related("protocol_version"), request.user), pk=treatment_id
        )
        assessments = list(outcomes.with_revisions(OutcomeAssessment.objects.filter(treatment=treatment)).prefetch_related(
            "photos"
        ).order_by("time_point_day", "phase", "arm_id", "source"))
        events = list(outcomes.with_revisions(AdverseEvent.objects.filter(treatment=treatment)).order_by("onset_date", "pk"))
        record_viewed(request=request, action="view", obj=treatment, rows=[*assessments, *events],
                      detail={"page": "outcomes"})
        context = {"request": request}
        return Response({
            "treatment": treatment.pk,
            "time_points": outcomes.time_points_for(treatment.protocol_version),
            "measures": [
                {**dataclasses.asdict(m), "adherence": m.adherence}
                for m in measures_for_treatment(treatment=treatment, now=timezone.now())
            ],
            "assessments": OutcomeAssessmentSerializer(assessments, many=True, context=context).data,
            "adverse_events": AdverseEventSerializer(events, many=True, context=context).data,
        })


# --- reports ------------------------------------------------------------------------------------------------


def _summary(summary: GroupSummary) -> dict[str, Any]:
    return {**dataclasses.asdict(summary), "adverse_event_rate": summary.adverse_event_rate, "adherence": summary.adherence}


FILTER_PARAMETERS = [
    OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The protocol"),
    OpenApiParameter("date_from", OpenApiTypes.DATE, description="Treatments that ended on or after this date"),
    OpenApiParameter("date_to", OpenApiTypes.DATE, description="…and on or before this date"),
    OpenApiParameter("clinician", OpenApiTypes.INT, description="Only this clinician's treatments"),
    OpenApiParameter("fitzpatrick_type", OpenApiTypes.INT, description="Only patients of this Fitzpatrick type (1–6)"),
    OpenApiParameter("compare_with", OpenApiTypes.INT, description="Another protocol to put side by side"),
]


class ProtocolReportViewSet(viewsets.ViewSet):
    """The numbers behind the review pages, for one protocol (observational, clinic-scoped)."""

    @extend_schema(parameters=FILTER_PARAMETERS, responses=OpenApiTypes.OBJECT)
    def retrieve(self, request: Request, pk: str) -> Response:
        protocol = get_object_or_404(scoped(Protocol.objects.all(), request.user), pk=pk)
        params = request.query_params.copy()
        params.pop("protocol", None)
        try:
            filters = parse_filters(data=params, user=request.user)
        except DjangoValidationError as error:
            raise _as_drf_error(error) from None
        now = timezone.now()
        report = protocol_report(user=request.user, protocol=protocol, filters=filters, now=now)
        split_face = split_face_comparison(user=request.user, filters=report.filters, now=now)
        body: dict[str, Any] = {
            "protocol": {"id": protocol.pk, "name": protocol.name, "procedure": protocol.procedure},
            "filters": filters.as_query(),
            "overall": _summary(report.overall),
            "versions": [_summary(version) for version in report.versions],
            "split_face": dataclasses.asdict(split_face),
            "note": report.note,
        }
        other = params.get("compare_with", "")
        if other:
            other_id = row_id(other)
            if other_id is None:
                raise serializers.ValidationError({"compare_with": "Give the id of another protocol."})
            second = get_object_or_404(scoped(Protocol.objects.all(), request.user), pk=other_id)
            body["comparison"] = [
                _summary(s) for s in compare_protocols(user=request.user, protocols=(protocol, second), filters=filters, now=now)
            ]
        return Response(body)


router.register("outcomes", OutcomeAssessmentViewSet, basename="outcome")
router.register("adverse-events", AdverseEventViewSet, basename="adverse-event")
# A route of its own, so it needs nothing from the treatments viewset.
router.register(r"treatments/(?P<treatment_id>[0-9]+)/outcomes", TreatmentOutcomesViewSet, basename="treatment-outcomes")
router.register("reports/protocols", ProtocolReportViewSet, basename="protocol-report")
