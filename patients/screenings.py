"""Screening services: run a screening, override one, and gate treatments on it.

Business rules live here; admin pages, API views and the demo call these
functions and stay thin.
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.http import HttpRequest
from django.utils import timezone

from clinic import reasons
from clinic.audit import record_event
from clinic.roles import Capability
from clinic.scoping import can
from patients.intake import latest_intake, patient_zone
from patients.models import Intake, Treatment
from patients.models.screening import Screening, ScreeningOutcome, ScreeningOverride
from protocols.models import ProtocolVersion, StepKind
from protocols.rules import rules_for_version
from protocols.screening import screen

if TYPE_CHECKING:
    from clinic.models import Clinic
    from patients.models.patient import Patient

# A screening describes the patient as of the day it ran; after a month it no
# longer vouches for them (new medication, pregnancy, ...) and must be re-run.
SCREENING_VALID_FOR = timedelta(days=30)

ALLOWING_OUTCOMES = frozenset({ScreeningOutcome.CLEAR, ScreeningOutcome.CAUTION})

#: How far ahead a screening may be planned: a plausibility limit against typing mistakes
#: (2099 typed for 2026), not a clinical rule. A treatment still needs a screening run at most
#: ``SCREENING_VALID_FOR`` before it, so one planned further ahead is for planning only.
SCREENING_MAX_DAYS_AHEAD = 90


def screening_is_overridden(screening: Screening) -> bool:
    """True when a clinician recorded an override for this screening."""
    # Asked of the database, not the cached reverse accessor, which remembers
    # "no override" even after one is recorded.
    return screening.pk is not None and ScreeningOverride.objects.filter(screening_id=screening.pk).exists()


def _override_recorded_at(screening: Screening) -> datetime | None:
    """When a clinician recorded an override for this screening, or None (asked of the database, as above)."""
    if screening.pk is None:
        return None
    return ScreeningOverride.objects.filter(screening_id=screening.pk).values_list("created_at", flat=True).first()


def _to_the_minute(moment: datetime) -> datetime:
    # Staff enter procedure times to the minute: a screening at 09:30:40 precedes a procedure started "09:30".
    return moment.replace(second=0, microsecond=0)


def _clinic_clock(moment: datetime, *, zone: ZoneInfo, other: datetime) -> str:
    """``moment`` on the clinic's clock: "HH:MM", with its date when ``other`` falls on another day there."""
    local = timezone.localtime(moment, zone)
    same_day = local.date() == timezone.localtime(other, zone).date()
    return f"{local:%H:%M}" if same_day else f"{local:%Y-%m-%d %H:%M}"


def _after_start_message(what: str, rule: str, *, at: datetime, started_at: datetime, patient: Patient) -> str:
    zone_name = patient.clinic.time_zone
    zone = ZoneInfo(zone_name)
    return (
        f"{what} at {_clinic_clock(at, zone=zone, other=started_at)}, after the procedure started "
        f"({_clinic_clock(started_at, zone=zone, other=at)}); {rule} Clinic time ({zone_name})."
    )


def assert_screening_allows_treatment(
    *, screening: Screening | None, patient: Patient, protocol_version: ProtocolVersion, on: datetime
) -> None:
    """Raise ``ValidationError({"screening": msg})`` unless ``screening`` permits a treatment started at ``on``.

    It must be usable (``assert_screening_usable``), planned for the day the
    procedure starts on the clinic's clock, and it must precede the procedure:
    run (and, when needed, overridden) no later than ``on``, to the minute.
    ``on`` is the procedure's start.
    """
    assert_screening_usable(screening=screening, patient=patient, protocol_version=protocol_version, on=on)
    problem = screening_precedence_error(screening=screening, patient=patient, started_at=on)
    if problem:
        raise ValidationError({"screening": problem})


def assert_screening_usable(
    *, screening: Screening | None, patient: Patient, protocol_version: ProtocolVersion, on: datetime
) -> None:
    """Raise ``ValidationError({"screening": msg})`` unless ``screening`` could clear a treatment at ``on``, whatever its day.

    It must be a screening of this patient for this protocol version, its
    outcome clear/caution (or needs_override with a recorded override; a
    blocked one can never be overridden) and at most 30 days old at ``on``.
    Lists of the screenings to record a treatment on ask this at the current
    time: a procedure done yesterday may be recorded today on yesterday's
    screening, and ``assert_screening_allows_treatment`` then judges its day.
    """
    if screening is None:
        raise ValidationError({"screening": "A screening for this protocol is required before treatment."})
    if screening.patient_id != patient.pk:
        raise ValidationError({"screening": "This screening belongs to another patient."})
    if screening.protocol_version_id != protocol_version.pk:
        raise ValidationError({"screening": "This screening was run for another protocol version; screen again."})
    if screening.outcome == ScreeningOutcome.BLOCKED:
        raise ValidationError({"screening": "The screening blocks this procedure; it cannot be treated."})
    if screening.outcome not in ALLOWING_OUTCOMES and not screening_is_overridden(screening):
        raise ValidationError(
            {"screening": "The screening needs a clinician's documented override before treatment."}
        )
    if on - screening.run_at > SCREENING_VALID_FOR:
        raise ValidationError(
            {"screening": f"The screening is older than {SCREENING_VALID_FOR.days} days; screen the patient again."}
        )


def screening_precedence_error(
    *, screening: Screening, patient: Patient, started_at: datetime, recorded_start: datetime | None = None
) -> str | None:
    """Why ``screening`` cannot clear a procedure started at ``started_at``, or None.

    It was planned for another day than the procedure's, or it (or its
    override) came after the start. Recording a treatment and correcting a
    recorded one's start (rescheduling) both ask this, so a procedure moved to
    another day is refused with the same message as one recorded there.

    A correction — ``recorded_start`` is the start it corrects — that keeps the
    procedure on the day it was recorded on is not refused for the planned day:
    it changes nothing between the treatment's day and its screening. That
    pair can differ in a treatment recorded before the day was checked, or one
    whose day moved when the clinic's time zone was corrected; its time can
    still be corrected, but not moved to yet another day.
    """
    overridden_at = None if screening.outcome in ALLOWING_OUTCOMES else _override_recorded_at(screening)
    # Precedence first: screening again for the day does not help a procedure that started before now.
    precedence = _precedence_error(screening, overridden_at, started_at=started_at, patient=patient)
    if precedence:
        return precedence
    if recorded_start is not None and (
        procedure_day(recorded_start, patient=patient) == procedure_day(started_at, patient=patient)
    ):
        return None
    return _planned_day_error(screening, started_at=started_at, patient=patient)


def procedure_day(started_at: datetime, *, patient: Patient) -> dt.date:
    """The day a procedure started at ``started_at`` is done on, on the clinic's clock.

    Staff plan and screen in the clinic's days: it is the date a screening's
    ``planned_for`` names.
    """
    return timezone.localtime(started_at, ZoneInfo(patient.clinic.time_zone)).date()


def _planned_day_error(screening: Screening, *, started_at: datetime, patient: Patient) -> str | None:
    # Date windows ("isotretinoin in the last 6 months", "a peel in the last
    # 2 weeks") and the intake's age are judged on ``planned_for``: a
    # screening planned for a later day can be clear when one for the day of
    # the procedure is not. A procedure later than planned is refused too:
    # those windows only get safer, but the intake ages past its limit and
    # the patient's answers may change (a new medication, a pregnancy) in
    # between. "Screened for the day it is done" is the rule a clinic can
    # check at a glance.
    day = procedure_day(started_at, patient=patient)
    if screening.planned_for == day:
        return None
    return (
        f"The screening was run for a procedure on {screening.planned_for:%Y-%m-%d}, but this procedure started on "
        f"{day:%Y-%m-%d} (clinic time, {patient.clinic.time_zone}); screen the patient again for {day:%Y-%m-%d}."
    )


def _precedence_error(
    screening: Screening, overridden_at: datetime | None, *, started_at: datetime, patient: Patient
) -> str | None:
    if _to_the_minute(screening.run_at) > started_at:
        return _after_start_message(
            "The screening was run", "a screening must precede treatment.",
            at=screening.run_at, started_at=started_at, patient=patient,
        )
    # The override is part of the clearance: one recorded after the start did not clear this procedure.
    if overridden_at is not None and _to_the_minute(overridden_at) > started_at:
        return _after_start_message(
            "The override was recorded", "the override must precede treatment too.",
            at=overridden_at, started_at=started_at, patient=patient,
        )
    return None


# --- which versions a clinic may screen for -----------------------------------------

EXOSOME_STEP_KINDS = (StepKind.IN_CLINIC_APPLICATION, StepKind.HOME_APPLICATION)


def versions_usable_by(clinic: Clinic) -> models.QuerySet[ProtocolVersion]:
    """Published versions of the clinic's own protocols and of shared templates."""
    return (
        ProtocolVersion.objects.filter(status=ProtocolVersion.Status.PUBLISHED)
        .filter(models.Q(protocol__clinic=clinic) | models.Q(protocol__clinic__isnull=True))
        .select_related("protocol")
        .order_by("protocol__name", "-number")
    )


def version_usable_by(clinic: Clinic, version: ProtocolVersion) -> bool:
    """Is ``version`` one of ``versions_usable_by(clinic)``? Asked of the database, not the instance, which may be stale."""
    rows = ProtocolVersion.objects.filter(pk=version.pk).order_by().values_list("status", "protocol__clinic_id")[:1]
    return any(
        status == ProtocolVersion.Status.PUBLISHED and owner_id in (None, clinic.pk) for status, owner_id in rows
    )


def unusable_version_error(clinic: Clinic, version: ProtocolVersion | None) -> str:
    """Why a treatment cannot follow ``version`` in ``clinic``, naming what to do instead (read from the database)."""
    stored = ProtocolVersion.objects.filter(pk=getattr(version, "pk", None)).select_related("protocol").first()
    current = stored and versions_usable_by(clinic).filter(protocol_id=stored.protocol_id).first()
    if not stored or not current or stored.status == ProtocolVersion.Status.PUBLISHED:
        return "Choose a published protocol version this clinic can use."
    name = stored.protocol.name
    return (f"{name} v{stored.number} is {stored.get_status_display().lower()}: new treatments follow "
            f"v{current.number}. Screen the patient again for {name} v{current.number}, then record the treatment "
            "on that screening.")


def waiting_screenings(version: ProtocolVersion, *, now: datetime | None = None) -> int:
    """How many screenings for ``version`` could still clear a treatment (recent, not blocked, not yet used).

    Retiring the version strands them: the clinic is told how many patients
    must be screened again. Counted as the record form would offer them, less
    the override check (a screening waiting for its override waits too).
    """
    now = now or timezone.now()
    return (
        Screening.objects.filter(protocol_version=version, run_at__gte=now - SCREENING_VALID_FOR)
        .exclude(outcome=ScreeningOutcome.BLOCKED)
        .exclude(treatments__status=Treatment.Status.RECORDED)
        .count()
    )


def applies_exosome(version: ProtocolVersion) -> bool:
    """Does following this version put an exosome product on the patient's skin?"""
    return version.steps.filter(kind__in=EXOSOME_STEP_KINDS).exists()


# --- running and overriding ------------------------------------------------------


def _check_can(user: Any, capability: Capability, clinic: Clinic, what: str) -> None:
    if not can(user, capability, clinic):
        raise PermissionDenied(f"Your role in {clinic} does not allow you to {what}.")


def _answers_with_patient_facts(intake: Intake, patient: Patient) -> dict[str, Any]:
    answers = dict(intake.answers)
    # The patient record may know the skin type when the intake did not ask.
    if "fitzpatrick_type" not in answers and patient.fitzpatrick_type:
        answers["fitzpatrick_type"] = ["I", "II", "III", "IV", "V", "VI"][patient.fitzpatrick_type - 1]
    return answers


def planned_day_out_of_range(planned_for: dt.date, *, run_at: datetime, clinic: Clinic) -> str | None:
    """Why a screening run at ``run_at`` cannot be planned for ``planned_for``, or None.

    Not before the day it is run, on the clinic's clock: a treatment needs a
    screening run before the procedure started and planned for its day, so
    one planned for an earlier day could never clear a treatment (a
    procedure recorded late was screened before it, on its day). Not more
    than ``SCREENING_MAX_DAYS_AHEAD`` days after it.
    """
    today = timezone.localtime(run_at, ZoneInfo(clinic.time_zone)).date()
    where = f"clinic time, {clinic.time_zone}"
    if planned_for < today:
        return (
            f"{planned_for:%Y-%m-%d} is before today ({today:%Y-%m-%d}, {where}): a screening is run before the "
            "procedure, for the day it is done. Plan it for today or a later day."
        )
    last = today + timedelta(days=SCREENING_MAX_DAYS_AHEAD)
    if planned_for > last:
        return (
            f"{planned_for:%Y-%m-%d} is more than {SCREENING_MAX_DAYS_AHEAD} days ahead: plan the screening for "
            f"{last:%Y-%m-%d} ({where}) or earlier. Check the date."
        )
    return None


def run_screening(
    *,
    patient: Patient,
    protocol_version: ProtocolVersion,
    planned_for: dt.date,
    run_by: Any,
    intake: Intake | None = None,
    request: HttpRequest | None = None,
    run_at: datetime | None = None,
) -> Screening:
    """Screen ``patient`` for ``protocol_version`` on ``planned_for`` and store the result.

    Uses ``intake`` or, by default, the patient's latest intake. ``run_at``
    (default now) backdates the record for the demo and seeds, whose
    treatments lie in the past; staff pages and the API never pass it. Raises
    ``PermissionDenied`` without the screening role in the patient's clinic
    and ``ValidationError`` (keyed by field) for a planned day out of range
    (``planned_day_out_of_range``, judged on the day of ``run_at``), a version
    the clinic cannot use or a missing/foreign intake.  The record is
    immutable and logged.
    """
    clinic = patient.clinic
    _check_can(run_by, Capability.SCREEN, clinic, "run screenings")
    run_at = run_at or timezone.now()
    problem = planned_day_out_of_range(planned_for, run_at=run_at, clinic=clinic)
    if problem:
        raise ValidationError({"planned_for": problem})
    if not version_usable_by(clinic, protocol_version):
        raise ValidationError({"protocol_version": unusable_version_error(clinic, protocol_version)})
    if intake is None:
        intake = latest_intake(patient)
        if intake is None:
            raise ValidationError({"intake": "The patient has no intake yet; record one before screening."})
    elif intake.patient_id != patient.pk:
        raise ValidationError({"intake": "This intake belongs to another patient."})

    result = screen(
        answers=_answers_with_patient_facts(intake, patient),
        intake_effective_on=timezone.localtime(intake.effective_at, patient_zone(patient)).date(),
        rules=rules_for_version(protocol_version, clinic=clinic),
        procedure=protocol_version.procedure,
        exosome_applied=applies_exosome(protocol_version),
        planned_for=planned_for,
        intake_max_age_days=clinic.intake_max_age_days,
    )
    with transaction.atomic():
        screening = Screening.objects.create(
            patient=patient, protocol_version=protocol_version, intake=intake, planned_for=planned_for,
            outcome=result.outcome, findings=result.findings_as_dicts(), run_by=run_by, run_at=run_at,
        )
        record_event(
            actor=run_by, action="screening.run", clinic=clinic, obj=screening, request=request,
            detail={"patient": patient.pk, "version": protocol_version.pk, "outcome": result.outcome},
        )
    return screening


#: An override is the clinician's documented reasoning: "ok" does not document anything.
OVERRIDE_REASON_MIN_LENGTH = reasons.REASON_MIN_LENGTH
#: A paragraph, not a pasted document: 20,000 characters of it were accepted.
OVERRIDE_REASON_MAX_LENGTH = reasons.REASON_MAX_LENGTH


def override_screening(
    *, screening: Screening, clinician: Any, reason: str, request: HttpRequest | None = None
) -> ScreeningOverride:
    """Record a clinician's documented override of a ``needs_override`` screening.

    Only a role with ``Capability.OVERRIDE_SCREENING`` (clinicians) may; a
    ``blocked`` screening can never be overridden; the reason is required.
    """
    clinic = screening.patient.clinic
    _check_can(clinician, Capability.OVERRIDE_SCREENING, clinic, "override screenings")
    if screening.outcome == ScreeningOutcome.BLOCKED:
        raise ValidationError({"screening": "A blocked screening cannot be overridden."})
    if screening.outcome != ScreeningOutcome.NEEDS_OVERRIDE:
        raise ValidationError({"screening": "Only a screening that needs an override can be overridden."})
    reason = (reason or "").strip()
    if reasons.reason_length(reason) < OVERRIDE_REASON_MIN_LENGTH:
        raise ValidationError({"reason": reasons.too_short(
            why="Say why the treatment may go ahead despite the findings",
            example="HSV prophylaxis prescribed, started today",
        )})
    if len(reason) > OVERRIDE_REASON_MAX_LENGTH:
        raise ValidationError({"reason": reasons.too_long(reason, limit=OVERRIDE_REASON_MAX_LENGTH)})
    if screening_is_overridden(screening):
        raise ValidationError({"screening": "This screening has already been overridden."})
    try:
        with transaction.atomic():
            override = ScreeningOverride.objects.create(screening=screening, clinician=clinician, reason=reason)
            record_event(
                actor=clinician, action="screening.override", clinic=clinic, obj=screening, request=request,
                detail={"override": override.pk, "patient": screening.patient_id},
            )
    except IntegrityError:
        # Two clinicians overrode at once; the one-to-one keeps the first.
        raise ValidationError({"screening": "This screening has already been overridden."}) from None
    return override
