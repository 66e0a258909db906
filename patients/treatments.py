"""Treatment services: record a treatment with its timeline, reschedule, cancel, and manage one reminder.

The admin, the API and the demo all call these; they hold the rules:

* a treatment needs a screening that allows it (``patients.screenings``), a
  published protocol version the clinic may use, and usable lots;
* the treatment, its arms, its applications and its reminder rows are written
  in one transaction; reminder rows are unique per treatment, step and
  occurrence and are inserted with ``ignore_conflicts``, so running the
  scheduling again never duplicates one;
* changing the procedure time moves the rows that have not gone out yet, and
  brings back those skipped only for being past (but a follow-up visit staff
  moved by hand keeps its time); cancelling stops them;
* only a clinician records, reschedules or cancels a treatment; staff with
  ``MANAGE_REMINDERS`` resend or cancel one reminder, or move one follow-up
  visit. Every change is logged.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.http import HttpRequest
from django.utils import timezone

from clinic import reasons
from clinic.audit import record_event
from clinic.models import Clinic
from clinic.roles import Capability
from clinic.scoping import can
from patients.applied_times import recorded_application_times
from patients.models import ExosomeApplication, Patient, Reminder, Screening, Treatment, TreatmentArm
from patients.reminders import email_block_reason, refused_permanently
from patients.screenings import (
    assert_screening_allows_treatment,
    screening_precedence_error,
    unusable_version_error,
    version_usable_by,
)
from patients.timeline import (
    Occurrence,
    QuietHours,
    StepTiming,
    avoidance_end,
    build_timeline,
    reminder_due_at,
    shift_out_of_quiet_hours,
)
from protocols.frozen_steps import frozen_steps
from protocols.models import ExosomeProduct, ProductLot, ProtocolStep, ProtocolVersion, StepKind

Status = Reminder.Status
# A procedure recorded as ending later than this from now is a typing mistake.
FUTURE_TOLERANCE = dt.timedelta(minutes=15)
# Plausibility limits of an in-clinic application, against typing mistakes (500 ml for 5.00 ml, a delay typed in
# seconds); not clinical advice. Applied in clinic means during the visit: within a day of the procedure.
MAX_APPLICATION_VOLUME_ML = Decimal("20")
MAX_APPLICATION_MINUTES_AFTER = 24 * 60


@dataclass(frozen=True)
class ArmInput:
    """One side (or area) of a split-face treatment."""

    label: str
    is_control: bool = False
    product: ExosomeProduct | None = None
    control_description: str = ""


@dataclass(frozen=True)
class ApplicationInput:
    """One in-clinic exosome application; ``arm_label`` names the arm for split-face treatments."""

    lot: ProductLot
    volume_ml: Decimal
    minutes_after_procedure: int = 0
    applied_by: Any = None
    arm_label: str = ""


@dataclass
class _Errors:
    by_field: dict[str, list[str | ValidationError]] = field(default_factory=dict)

    def add(self, name: str, message: str | ValidationError) -> None:
        self.by_field.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if self.by_field:
            raise ValidationError(self.by_field)


def _check_can(user: Any, capability: Capability, clinic: Any, what: str) -> None:
    if not can(user, capability, clinic):
        raise PermissionDenied(f"Your role in {clinic} does not allow you to {what}.")


def _check_times(errors: _Errors, *, started_at: Any, ended_at: Any, now: dt.datetime) -> None:
    for name, value in (("started_at", started_at), ("ended_at", ended_at)):
        if not isinstance(value, dt.datetime) or timezone.is_naive(value):
            errors.add(name, "Give a date and time with its time zone.")
    if "started_at" in errors.by_field or "ended_at" in errors.by_field:
        return
    if ended_at < started_at:
        errors.add("ended_at", "The procedure cannot end before it started.")
    if ended_at > now + FUTURE_TOLERANCE:
        errors.add("ended_at", "The procedure cannot end in the future; record it once it is done.")


def _check_arms(errors: _Errors, *, arms: Sequence[ArmInput], clinic_id: int) -> None:
    if not arms:
        return
    if len(arms) != 2:
        errors.add("arms", "A split-face treatment has exactly two arms (e.g. left and right).")
    labels = [arm.label.strip().lower() for arm in arms]
    if any(not label for label in labels):
        errors.add("arms", "Every arm needs a label, e.g. left or right.")
    if len(set(labels)) != len(labels):
        errors.add("arms", "The two arms need different labels.")
    for arm in arms:
        if arm.is_control and arm.product is not None:
            errors.add("arms", f"Arm {arm.label!r} is the control; it gets no exosome product.")
        if not arm.is_control and arm.product is None:
            errors.add("arms", f"Arm {arm.label!r} needs its exosome product, or mark it as the control.")
        if arm.product is not None and arm.product.clinic_id not in (None, clinic_id):
            errors.add("arms", f"The product of arm {arm.label!r} belongs to another clinic.")


def _check_applications(
    errors: _Errors, *, applications: Sequence[ApplicationInput], arms: Sequence[ArmInput], clinic_id: int,
    on: dt.date | None, ended_at: dt.datetime | None = None,
) -> None:
    arms_by_label = {arm.label.strip().lower(): arm for arm in arms}
    for number, application in enumerate(applications, start=1):
        prefix = f"Application {number}: "
        lot = application.lot
        if lot.clinic_id != clinic_id:
            errors.add("applications", prefix + "this lot belongs to another clinic.")
            continue
        minutes = application.minutes_after_procedure
        # Only a plausible delay is added: 10**12 minutes would overflow the date and answer 500.
        plausible = isinstance(minutes, int) and not minutes_after_problem(minutes)
        applied_at = ended_at + dt.timedelta(minutes=minutes) if ended_at and plausible else None
        reason = lot.unusable_reason(on, applied_at=applied_at) if on else None
        if reason:
            errors.add("applications", prefix + reason)
        for problem in (volume_problem(application.volume_ml), minutes_after_problem(minutes)):
            if problem:
                errors.add("applications", prefix + problem)
        label = application.arm_label.strip().lower()
        if arms and not label:
            errors.add("applications", prefix + "say which arm received it.")
        elif label and label not in arms_by_label:
            errors.add("applications", prefix + f"there is no arm {application.arm_label!r}.")
        elif label:
            arm = arms_by_label[label]
            if arm.is_control:
                errors.add("applications", prefix + f"arm {arm.label!r} is the control and receives no exosomes.")
            elif arm.product is not None and lot.product_id != arm.product.pk:
                errors.add("applications", prefix + f"the lot is not of the product of arm {arm.label!r}.")


def volume_problem(volume_ml: Any) -> str | None:
    """Why an in-clinic application's volume (ml) cannot be recorded, or None."""
    if volume_ml is None or Decimal(volume_ml) <= 0:
        return "give the volume applied in ml (more than 0)."
    if Decimal(volume_ml) > MAX_APPLICATION_VOLUME_ML:
        return (f"{volume_ml} ml is more than an application in clinic takes (at most {MAX_APPLICATION_VOLUME_ML} ml); "
                "check the volume for a typing mistake.")
    return None


def minutes_after_problem(minutes: Any) -> str | None:
    """Why an in-clinic application's minutes after the procedure cannot be recorded, or None."""
    if minutes is None or minutes < 0:
        return "minutes after the procedure cannot be negative."
    if minutes > MAX_APPLICATION_MINUTES_AFTER:
        return (f"an application in clinic is given during the visit, at most {MAX_APPLICATION_MINUTES_AFTER} minutes "
                f"(24 hours) after the procedure; check {minutes} for a typing mistake.")
    return None


#: The code of the error that refuses a screening already used for a treatment; the admin adds a link for it.
SCREENING_USED = "screening_used"


def treatment_using_screening(screening: Screening) -> Treatment | None:
    """The treatment (not cancelled) that ``screening`` already cleared, if there is one."""
    return Treatment.objects.filter(screening=screening).exclude(status=Treatment.Status.CANCELLED).first()


def screening_used_error(existing: Treatment) -> ValidationError:
    """The refusal of a second treatment on one screening; ``params`` name the existing treatment."""
    ended = existing.ended_at.astimezone(ZoneInfo(existing.clinic.time_zone))
    return ValidationError(
        "This screening was already used for the treatment recorded on %(ended)s (%(treatment)s). "
        "Open that treatment to correct it, or screen the patient again for a new procedure.",
        code=SCREENING_USED,
        params={"ended": f"{ended:%Y-%m-%d %H:%M}", "treatment": f"treatment {existing.pk}", "treatment_id": existing.pk},
    )


def _check_screening_unused(errors: _Errors, *, screening: Screening | None) -> None:
    existing = treatment_using_screening(screening) if screening is not None else None
    if existing is not None:
        errors.add("screening", screening_used_error(existing))


def _check_device_settings(errors: _Errors, *, needle_depth_mm: Any, passes: Any) -> None:
    # The model fields' own validators (and their digits and range): bulk inserts skip full_clean().
    for name, value in (("needle_depth_mm", needle_depth_mm), ("passes", passes)):
        if value is None:
            continue
        try:
            Treatment._meta.get_field(name).clean(value, None)
        except ValidationError as error:
            for message in error.messages:
                errors.add(name, message)


def treatment_errors(
    *,
    patient: Patient,
    protocol_version: ProtocolVersion | None,
    screening: Screening | None,
    started_at: Any,
    ended_at: Any,
    areas: str,
    needle_depth_mm: Any = None,
    passes: Any = None,
    applications: Sequence[ApplicationInput] = (),
    arms: Sequence[ArmInput] = (),
    now: dt.datetime | None = None,
) -> dict[str, list[str | ValidationError]]:
    """Every reason the treatment cannot be recorded, by field (empty when it can)."""
    now = now or timezone.now()
    errors = _Errors()
    clinic = patient.clinic
    _check_times(errors, started_at=started_at, ended_at=ended_at, now=now)
    if not (areas or "").strip():
        errors.add("areas", "Say which areas were treated, e.g. full face.")
    _check_device_settings(errors, needle_depth_mm=needle_depth_mm, passes=passes)
    if protocol_version is None or not version_usable_by(clinic, protocol_version):
        errors.add("protocol_version", unusable_version_error(clinic, protocol_version))
    elif "started_at" not in errors.by_field:
        # Judged at the start of the procedure: the screening must precede it, and still be valid then.
        try:
            assert_screening_allows_treatment(
                screening=screening, patient=patient, protocol_version=protocol_version, on=started_at
            )
        except ValidationError as error:
            for name, messages in error.message_dict.items():
                for message in messages:
                    errors.add(name, message)
    if "screening" not in errors.by_field:
        _check_screening_unused(errors, screening=screening)
    _check_arms(errors, arms=arms, clinic_id=clinic.pk)
    on = _clinic_date(ended_at, clinic.time_zone) if "ended_at" not in errors.by_field else None
    _check_applications(
        errors, applications=applications, arms=arms, clinic_id=clinic.pk, on=on, ended_at=ended_at if on else None
    )
    return errors.by_field


def recalled_lots(treatment: Treatment) -> list[ProductLot]:
    """The recalled lots this treatment's applications used, each once: staff follow up these patients."""
    return list(
        ProductLot.objects.filter(applications__treatment=treatment, recalled=True)
        .select_related("product", "clinic").distinct().order_by("recalled_at", "pk")
    )


def _clinic_date(moment: dt.datetime, zone_name: str) -> dt.date:
    return moment.astimezone(ZoneInfo(zone_name)).date()


# --- the timeline rows -------------------------------------------------------------


def planned_occurrences(treatment: Treatment, *, steps: Sequence[StepTiming] | None = None) -> list[Occurrence]:
    """The treatment's timeline as computed from its protocol, in the patient's zone and clinic's quiet hours.

    ``steps`` are the version's steps when the caller already has them.
    """
    zone, quiet = _reminder_clock(treatment)
    return build_timeline(
        steps=list(treatment.protocol_version.steps.all() if steps is None else steps),
        ended_at=treatment.ended_at, zone=zone, quiet=quiet,
    )


def _reminder_clock(treatment: Treatment) -> tuple[ZoneInfo, QuietHours]:
    """The clock a treatment's reminders are timed on: the patient's zone and the clinic's quiet hours."""
    clinic = treatment.clinic
    return ZoneInfo(treatment.patient.zone_name), QuietHours(start=clinic.quiet_hours_start, end=clinic.quiet_hours_end)


def reminder_due_for(
    *, treatment: Treatment, step: StepTiming, occurs_at: dt.datetime, now: dt.datetime | None = None
) -> dt.datetime:
    """When the reminder of ``step`` happening at ``occurs_at`` goes out: as the timeline times it, or,
    when that is already past (``now``), at once unless the quiet hours hold it back."""
    zone, quiet = _reminder_clock(treatment)
    due_at = reminder_due_at(occurs_at=occurs_at, remind_minutes_before=step.remind_minutes_before, zone=zone, quiet=quiet)
    if now is not None and due_at < now:
        return shift_out_of_quiet_hours(due_at=now, zone=zone, quiet=quiet)
    return due_at


def _late_before(now: dt.datetime) -> dt.datetime:
    """Occurrences before this instant are too late to remind of."""
    return now - dt.timedelta(minutes=settings.AFTERCARE_REMINDER_LATE_GRACE_MINUTES)


def _too_late_or_due(occurrence: Occurrence, *, treatment: Treatment, now: dt.datetime) -> tuple[bool, dt.datetime]:
    """Whether the reminder of ``occurrence`` is too late to send (``now``), and when it is due if not.

    A step of one moment ("cleanse tonight") is too late once it is past by
    more than the late grace. An avoidance is not while it lasts: "no retinoids
    until day 5" still matters to a patient whose procedure ended after the
    step's time, so its reminder goes out at once, or when the quiet hours end,
    unless the avoidance is over by then.
    """
    over_at = occurrence.avoidance_over_at
    if over_at is None:
        return occurrence.occurs_at < _late_before(now), occurrence.due_at
    if occurrence.due_at >= now:
        return False, occurrence.due_at
    zone, quiet = _reminder_clock(treatment)
    due_at = shift_out_of_quiet_hours(due_at=now, zone=zone, quiet=quiet)
    return (True, occurrence.due_at) if due_at >= over_at else (False, due_at)


TOO_LATE = "The step was already past when the treatment was recorded or rescheduled."
REPLACED_BY_LATER = ("Replaced by a later reminder of the same avoidance: the step was already past when the "
                     "treatment was recorded or rescheduled.")

_Key = tuple[int, int]  # (step, occurrence)


def _skips_and_due_times(
    occurrences: Sequence[Occurrence], *, treatment: Treatment, now: dt.datetime
) -> dict[_Key, tuple[str, dt.datetime]]:
    """Why each occurrence's reminder is skipped ("" when it is not), and when it is due.

    Each occurrence is judged by ``_too_late_or_due``, but of a repeating
    avoidance's occurrences already past only the latest is told at once: the
    earlier ones would bring the same message at the same moment ("avoid sun"
    three times at 12:00), so they are skipped as replaced by it.
    """
    timings = {}
    latest_told: dict[int, int] = {}  # step -> its latest past occurrence brought forward
    for occurrence in occurrences:
        late, due_at = _too_late_or_due(occurrence, treatment=treatment, now=now)
        timings[(occurrence.step_id, occurrence.occurrence)] = (TOO_LATE if late else "", due_at)
        if occurrence.avoidance_over_at is not None and occurrence.due_at < now and not late:
            latest_told[occurrence.step_id] = max(occurrence.occurrence, latest_told.get(occurrence.step_id, 0))
    for occurrence in occurrences:
        if occurrence.occurrence < latest_told.get(occurrence.step_id, -1) and occurrence.due_at < now:
            timings[(occurrence.step_id, occurrence.occurrence)] = (REPLACED_BY_LATER, occurrence.due_at)
    return timings


def _reminder_rows(*, treatment: Treatment, occurrences: list[Occurrence], now: dt.datetime) -> list[Reminder]:
    """Steps that send no reminder get no row; occurrences too late to remind of are stored as skipped."""
    sending = [occurrence for occurrence in occurrences if occurrence.sends_reminder]
    timings = _skips_and_due_times(sending, treatment=treatment, now=now)
    rows = []
    for occurrence in sending:
        skipped_because, due_at = timings[(occurrence.step_id, occurrence.occurrence)]
        rows.append(Reminder(
            treatment=treatment, step_id=occurrence.step_id, occurrence=occurrence.occurrence,
            occurs_at=occurrence.occurs_at, due_at=due_at,
            status=Status.SKIPPED if skipped_because else Status.SCHEDULED, last_error=skipped_because,
        ))
    return rows


def schedule_reminders(*, treatment: Treatment, now: dt.datetime | None = None) -> int:
    """Create the missing reminder rows of ``treatment``; idempotent. Returns how many rows it now has.

    Steps that send no reminder get no row; occurrences already well past are
    stored as skipped so the timeline says why nothing was sent.
    """
    _insert_missing_rows(treatment=treatment, occurrences=planned_occurrences(treatment), now=now or timezone.now())
    return Reminder.objects.filter(treatment=treatment).count()


def _insert_missing_rows(*, treatment: Treatment, occurrences: list[Occurrence], now: dt.datetime) -> None:
    # The unique constraint on (treatment, step, occurrence) makes a second run a no-op.
    rows = _reminder_rows(treatment=treatment, occurrences=occurrences, now=now)
    Reminder.objects.bulk_create(rows, ignore_conflicts=True)


@functools.cache
def _history_manager(model: type[models.Model]) -> Any:
    # django-simple-history builds a new manager class on every access to ``Model.history``;
    # the class-level manager holds no state, so one per model serves every call.
    return model.history  # type: ignore[attr-defined]


def _insert_with_history(rows: list[Any]) -> None:
    """Insert new rows of one model and their "created" history rows: two statements however many rows.

    The same rows as ``save()`` and django-simple-history's ``post_save`` would
    write (history user from the request, as there), in fewer round trips.
    """
    if rows:
        model = type(rows[0])
        model.objects.bulk_create(rows)
        # No reason given, as post_save stores it (bulk_history_create would store "").
        _history_manager(model).bulk_history_create(rows, default_change_reason=None)


def record_treatment(
    *,
    patient: Patient,
    protocol_version: ProtocolVersion,
    screening: Screening | None,
    clinician: Any,
    started_at: dt.datetime,
    ended_at: dt.datetime,
    areas: str,
    device: str = "",
    needle_depth_mm: Decimal | None = None,
    energy: str = "",
    density: str = "",
    passes: int | None = None,
    settings_notes: str = "",
    applications: Sequence[ApplicationInput] = (),
    arms: Sequence[ArmInput] = (),
    request: HttpRequest | None = None,
    now: dt.datetime | None = None,
) -> Treatment:
    """Record a procedure that was done, with its applications, arms and reminder timeline, in one transaction.

    Raises ``PermissionDenied`` unless ``clinician`` holds ``RECORD_TREATMENT`` in
    the patient's clinic, and ``ValidationError`` keyed by field (``screening``,
    ``ended_at``, ``applications``, ``arms``, …) when anything is wrong; then
    nothing is written. A screening clears one treatment: a second one on it (a
    double click, an API retry) is refused on ``screening`` with code
    ``SCREENING_USED``, also when both arrive at the same moment.
    """
    now = now or timezone.now()
    clinic = patient.clinic
    _check_can(clinician, Capability.RECORD_TREATMENT, clinic, "record treatments")
    errors = treatment_errors(
        patient=patient, protocol_version=protocol_version, screening=screening, started_at=started_at,
        ended_at=ended_at, areas=areas, needle_depth_mm=needle_depth_mm, passes=passes, applications=applications,
        arms=arms, now=now,
    )
    if errors:
        raise ValidationError(errors)
    treatment = Treatment(
        clinic=clinic, patient=patient, protocol_version=protocol_version, screening=screening,
        clinician=clinician, started_at=started_at, ended_at=ended_at, areas=areas.strip(), device=device,
        needle_depth_mm=needle_depth_mm, energy=energy, density=density, passes=passes,
        settings_notes=settings_notes,
    )
    try:
        _insert_treatment(treatment, applications=applications, arms=arms, request=request, now=now)
    except IntegrityError:
        # A concurrent call recorded a treatment on this screening between the check and the insert:
        # the unique index let one in, and this one names it.
        existing = treatment_using_screening(screening) if screening is not None else None
        if existing is None:
            raise
        raise ValidationError({"screening": [screening_used_error(existing)]}) from None
    return treatment


def _insert_treatment(
    treatment: Treatment, *, applications: Sequence[ApplicationInput], arms: Sequence[ArmInput],
    request: HttpRequest | None, now: dt.datetime,
) -> None:
    """Write the checked treatment with its arms, applications and reminder rows, in one transaction."""
    clinician, protocol_version = treatment.clinician, treatment.protocol_version
    with transaction.atomic():
        _insert_with_history([treatment])
        arm_rows = {
            arm.label.strip().lower(): TreatmentArm(
                treatment=treatment, label=arm.label.strip(), is_control=arm.is_control, product=arm.product,
                control_description=arm.control_description,
            )
            for arm in arms
        }
        _insert_with_history(list(arm_rows.values()))
        application_rows = [
            ExosomeApplication(
                treatment=treatment, arm=arm_rows.get(application.arm_label.strip().lower()), lot=application.lot,
                volume_ml=application.volume_ml, minutes_after_procedure=application.minutes_after_procedure,
                applied_by=application.applied_by or clinician,
            )
            for application in applications
        ]
        for row in application_rows:
            row.assert_lot_usable()  # what ExosomeApplication.save() checks; bulk_create does not call it
        _insert_with_history(application_rows)
        # The version was just found published, so its steps are frozen and may come from memory.
        occurrences = planned_occurrences(treatment, steps=frozen_steps(protocol_version.pk))
        reminders = _reminder_rows(treatment=treatment, occurrences=occurrences, now=now)
        Reminder.objects.bulk_create(reminders, ignore_conflicts=True)
        # A new treatment had no rows, so every one was inserted: no need to count them.
        count = len(reminders)
        record_event(
            actor=clinician, action="treatment.record", clinic=treatment.clinic, obj=treatment, request=request,
            detail={"patient": treatment.patient_id, "version": protocol_version.pk, "reminders": count},
        )


def reschedule_treatment(
    *,
    treatment: Treatment,
    started_at: dt.datetime,
    ended_at: dt.datetime,
    by: Any,
    request: HttpRequest | None = None,
    now: dt.datetime | None = None,
) -> Recomputed:
    """Correct the procedure's time and recompute every reminder that has not gone out; say what became of them.

    Rows skipped only because their step was already past come back when the
    corrected time puts them ahead (a mistyped date). Sent, failed and
    cancelled rows, and rows skipped for another reason, keep their history; a
    row a worker is sending right now cannot be stopped and is left alone. No
    row is ever duplicated.
    """
    now = now or timezone.now()
    _check_can(by, Capability.RECORD_TREATMENT, treatment.clinic, "change treatments")
    errors = _Errors()
    _check_times(errors, started_at=started_at, ended_at=ended_at, now=now)
    if "started_at" not in errors.by_field:
        # A corrected start may not move the procedure before the screening that cleared it.
        problem = screening_precedence_error(
            screening=treatment.screening, patient=treatment.patient, started_at=started_at,
            recorded_start=treatment.started_at,
        )
        if problem:
            errors.add("started_at", problem)
    errors.raise_if_any()
    with transaction.atomic():
        locked = Treatment.objects.select_for_update().get(pk=treatment.pk)
        # Judged on the locked row: the page may have loaded the treatment before another tab cancelled it.
        if locked.status == Treatment.Status.CANCELLED:
            raise ValidationError({"ended_at": "A cancelled treatment cannot be rescheduled."})
        previous = {"started_at": locked.started_at.isoformat(), "ended_at": locked.ended_at.isoformat()}
        locked.started_at, locked.ended_at = started_at, ended_at
        _check_lots_at_new_time(locked)
        locked.save(update_fields=["started_at", "ended_at"])
        result = recompute_open_reminders(treatment=locked, now=now)
        record_event(
            actor=by, action="treatment.reschedule", clinic=locked.clinic, obj=locked, request=request,
            detail={"previous": previous, "ended_at": ended_at.isoformat(), **result.as_detail()},
        )
    treatment.started_at, treatment.ended_at = started_at, ended_at
    return result


def _check_lots_at_new_time(treatment: Treatment) -> None:
    """Refuse a corrected time at which a lot applied in ``treatment`` could not have been (e.g. after its recall)."""
    problems = []
    for application in treatment.applications.select_related("lot__clinic"):
        application.treatment = treatment  # the corrected times
        reason = application.lot.unusable_reason(treatment.procedure_date(), applied_at=application.applied_at())
        if reason:
            problems.append(f"At the corrected time the application of lot {application.lot.lot_number} is refused: "
                            f"{reason}")
    if problems:
        raise ValidationError({"ended_at": problems})


@dataclass(frozen=True)
class Recomputed:
    """What recomputing a treatment's timeline did to its reminders that had not gone out."""

    scheduled: int = 0  # due at their new times
    revived: int = 0  # of the scheduled ones, those that had been skipped as too late
    past: int = 0  # skipped: already past at their new times

    def __add__(self, other: Recomputed) -> Recomputed:
        return Recomputed(self.scheduled + other.scheduled, self.revived + other.revived, self.past + other.past)

    def as_detail(self) -> dict[str, int]:
        return {"reminders_moved": self.scheduled, "reminders_revived": self.revived, "reminders_past": self.past}


# Rows a recomputed timeline may move: those not gone out, and those skipped only for being past
# (a mistyped date or zone made them so). A row a person cancelled, or skipped for another reason, stays.
_OPEN = models.Q(status__in=Reminder.PENDING) | models.Q(
    status=Status.SKIPPED, last_error__in=[TOO_LATE, REPLACED_BY_LATER]
)


def recompute_open_reminders(*, treatment: Treatment, now: dt.datetime) -> Recomputed:
    """Give the treatment's open reminder rows the times of its timeline as computed now; add missing rows.

    Call it inside the transaction that changed what the timeline depends on
    (the procedure's end, the patient's time zone).
    """
    steps = {step.pk: step for step in treatment.protocol_version.steps.all()}
    # Computed once: for the moved rows and the missing ones.
    occurrences = planned_occurrences(treatment, steps=list(steps.values()))
    planned = {(item.step_id, item.occurrence): item for item in occurrences}
    timings = _skips_and_due_times([item for item in occurrences if item.sends_reminder], treatment=treatment, now=now)
    scheduled = revived = past = 0
    for row in Reminder.objects.filter(_OPEN, treatment=treatment):
        key = (row.step_id, row.occurrence)
        occurrence = planned.get(key)
        if occurrence is None:
            continue
        if row.moved_at is not None:
            occurrence = _kept_visit(row, treatment=treatment, step=steps[row.step_id])
            skipped_because, due_at = _skips_and_due_times([occurrence], treatment=treatment, now=now)[key]
        else:
            skipped_because, due_at = timings[key]
        if _unchanged(row, occurrence, due_at=due_at, skipped_because=skipped_because) or not _move_row(
            row, occurrence, skipped_because=skipped_because, due_at=due_at
        ):
            continue
        if skipped_because:
            past += 1
        else:
            scheduled += 1
            if row.status == Status.SKIPPED:
                revived += 1
    _insert_missing_rows(treatment=treatment, occurrences=occurrences, now=now)
    return Recomputed(scheduled=scheduled, revived=revived, past=past)


def _kept_visit(row: Reminder, *, treatment: Treatment, step: ProtocolStep) -> Occurrence:
    """A visit staff moved by hand stays at the time agreed with the patient, not the protocol's;
    only its reminder's due time follows the clock (the patient's zone, the quiet hours) it is timed on."""
    due_at = reminder_due_for(treatment=treatment, step=step, occurs_at=row.occurs_at)
    return Occurrence(
        step_id=row.step_id, occurrence=row.occurrence, occurs_at=row.occurs_at, due_at=due_at, sends_reminder=True
    )


def _unchanged(row: Reminder, occurrence: Occurrence, *, due_at: dt.datetime, skipped_because: str) -> bool:
    """A pending row already at its computed times: left as it is (its attempts and retry time too).

    Not one replaced by a later reminder of its avoidance: left pending at its past time, it would go out beside it.
    """
    return (
        skipped_because != REPLACED_BY_LATER and row.status in Reminder.PENDING
        and (row.occurs_at, row.due_at) == (occurrence.occurs_at, due_at)
    )


def _move_row(row: Reminder, occurrence: Occurrence, *, skipped_because: str, due_at: dt.datetime) -> bool:
    # Conditional: a row that became "sending" meanwhile is not touched, nor one staff moved meanwhile,
    # and a queued row's task will find it no longer queued and stop.
    return bool(Reminder.objects.filter(_OPEN, pk=row.pk, moved_at=row.moved_at).update(
        updated_at=timezone.now(), occurs_at=occurrence.occurs_at, due_at=due_at, attempts=0, lease_until=None,
        status=Status.SKIPPED if skipped_because else Status.SCHEDULED, last_error=skipped_because,
    ))


def recompute_for_new_time_zone(
    *, patient: Patient, previous_zone: str, by: Any, request: HttpRequest | None = None, now: dt.datetime | None = None,
) -> Recomputed:
    """The patient's time zone changed: recompute the open reminders of their recorded treatments.

    ``previous_zone`` is the patient's stored zone before the change ("" for the
    clinic's). "Day 1 at 08:30" means 08:30 on the patient's clock, so rows
    computed in the old zone would arrive at the wrong hour, even in quiet
    hours. Call it in the transaction that saves the patient; each treatment
    with a reminder moved gets an audit event, as a reschedule does.
    """
    if (previous_zone or patient.clinic.time_zone) == patient.zone_name:
        return Recomputed()
    now = now or timezone.now()
    total = Recomputed()
    with transaction.atomic():
        # Locks the treatments only (not their clinic), as a reschedule does, so neither overwrites the other.
        recorded = Treatment.objects.select_for_update(of=("self",)).filter(
            patient=patient, status=Treatment.Status.RECORDED
        ).select_related("clinic", "protocol_version")
        for treatment in recorded:
            treatment.patient = patient  # the instance just saved, in the new zone
            result = recompute_open_reminders(treatment=treatment, now=now)
            if result == Recomputed():
                continue  # every reminder had gone out: nothing of this treatment changed (the patient's history has the zone)
            record_event(
                actor=by, action="treatment.recompute", clinic=treatment.clinic, obj=treatment, request=request,
                detail={"previous_zone": previous_zone or patient.clinic.time_zone, "time_zone": patient.zone_name,
                        **result.as_detail()},
            )
            total += result
    return total


@dataclass(frozen=True)
class ClinicRecomputed:
    """What a change of the clinic's time zone or quiet hours did to its reminders not yet sent."""

    treatments: int = 0  # treatments with a reminder moved or skipped
    reminders: Recomputed = Recomputed()


def recompute_for_clinic_time(
    *, clinic: Clinic, changed: Sequence[str], by: Any, request: HttpRequest | None = None,
    now: dt.datetime | None = None,
) -> ClinicRecomputed:
    """The clinic's time zone or quiet hours changed (``changed`` names the fields): move the reminders they time.

    The quiet hours time every patient's reminders; the clinic's zone only those
    of patients without a zone of their own. ``clinic`` is the instance just
    saved; call it in the same transaction. Each treatment whose reminders moved
    gets an audit event naming the change, as a patient's new zone does.
    """
    changed = sorted(set(changed) & {"time_zone", "quiet_hours_start", "quiet_hours_end"})
    quiet = {"quiet_hours_start", "quiet_hours_end"} & set(changed)
    if not changed:
        return ClinicRecomputed()
    now = now or timezone.now()
    recorded = Treatment.objects.filter(
        clinic=clinic, status=Treatment.Status.RECORDED,
        pk__in=Reminder.objects.filter(_OPEN, treatment__clinic=clinic).values("treatment_id"),
    )
    if not quiet:
        recorded = recorded.filter(patient__time_zone="")
    count, total = 0, Recomputed()
    with transaction.atomic():
        for treatment in recorded.select_for_update(of=("self",)).select_related("patient", "protocol_version"):
            treatment.clinic = treatment.patient.clinic = clinic  # the new settings
            result = recompute_open_reminders(treatment=treatment, now=now)
            if result == Recomputed():
                continue
            record_event(
                actor=by, action="treatment.recompute", clinic=clinic, obj=treatment, request=request,
                detail={"clinic_changed": changed, **result.as_detail()},
            )
            count, total = count + 1, total + result
    return ClinicRecomputed(treatments=count, reminders=total)


#: "ok" or "x" says nothing to whoever reads the cancelled treatment later; "entered twice" does
CANCEL_REASON_MIN_LENGTH = reasons.REASON_MIN_LENGTH


def cancel_treatment(*, treatment: Treatment, by: Any, reason: str, request: HttpRequest | None = None) -> int:
    """Cancel a treatment and every reminder of it that has not gone out; return how many were cancelled."""
    _check_can(by, Capability.RECORD_TREATMENT, treatment.clinic, "cancel treatments")
    reason = (reason or "").strip()  # kept as written, line breaks too; judged without its blanks
    if reasons.reason_length(reason) < CANCEL_REASON_MIN_LENGTH:
        raise ValidationError({"reason": reasons.too_short(
            why="Say why the treatment is cancelled", example="recorded on the wrong patient"
        )})
    if len(reason) > reasons.REASON_MAX_LENGTH:
        raise ValidationError({"reason": reasons.too_long(reason)})
    with transaction.atomic():
        # Judged on the locked row: of two tabs cancelling at once, the second is refused and the first's reason stays.
        locked = Treatment.objects.select_for_update().get(pk=treatment.pk)
        if locked.status == Treatment.Status.CANCELLED:
            raise ValidationError({"status": "This treatment is already cancelled."})
        locked.status = Treatment.Status.CANCELLED
        locked.cancelled_at = timezone.now()
        locked.cancelled_by = by
        locked.cancel_reason = reason
        locked.save(update_fields=["status", "cancelled_at", "cancelled_by", "cancel_reason"])
        cancelled = Reminder.objects.filter(treatment=locked, status__in=Reminder.PENDING).update(
            updated_at=timezone.now(), status=Status.CANCELLED, lease_until=None, last_error="The treatment was cancelled."
        )
        record_event(
            actor=by, action="treatment.cancel", clinic=locked.clinic, obj=locked, request=request,
            detail={"reason": reason, "reminders_cancelled": cancelled},
        )
    for name in ("status", "cancelled_at", "cancelled_by", "cancel_reason"):
        setattr(treatment, name, getattr(locked, name))
    return cancelled


# --- one reminder ------------------------------------------------------------------


#: What a resend replaces, by the field the row keeps it in (``previous_*``, the latest resend's).
_REPLACED_BY_RESEND = {
    "status": "previous_status", "attempts": "previous_attempts", "last_attempt_at": "previous_attempt_at",
    "sent_at": "previous_sent_at", "last_error": "previous_error",
}


#: A delivery starting afresh: scheduled, untried.
_FRESH_DELIVERY = {"status": Status.SCHEDULED, "attempts": 0, "last_error": "", "lease_until": None}


def _new_delivery(locked: Reminder) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a new delivery of the locked row replaces, and the changes that start it (a resend, a moved visit).

    A new delivery has its own attempts and a new ``Message-ID``; the one it
    replaces is kept in the row's ``previous_*`` fields.
    """
    replaced = {field: getattr(locked, field) for field in _REPLACED_BY_RESEND}
    changes = {
        **{kept: replaced[field] for field, kept in _REPLACED_BY_RESEND.items()},
        **_FRESH_DELIVERY, "sent_at": None, "resend_count": F("resend_count") + 1,
    }
    return replaced, changes


#: The patient's email as each save of the patient left it, oldest first: (when saved, the email then).
EmailHistory = list[tuple[dt.datetime, str]]


def resend_refusal(reminder: Reminder, *, emails: EmailHistory | None = None) -> str:
    """Why sending ``reminder`` again would only be refused again, or "" when it may be resent.

    A 5xx reply is permanent: the client should not repeat the request (RFC 5321),
    and a copy to the same address gets the same answer, while repeated mail to
    refused addresses costs the clinic's sender reputation. So until the patient's
    email differs from the one refused, the resend is refused with the way out.
    ``emails`` is the patient's ``email_history`` when the caller has read it
    already (the timeline, for all its rows); otherwise it is read here.
    """
    if not refused_permanently(reminder):
        return ""
    treatment = reminder.treatment
    patient = treatment.patient
    failed_at = reminder.last_attempt_at or reminder.updated_at
    history = email_history(patient) if emails is None else emails
    if _email_at(history, failed_at, current=patient.email).strip().lower() != patient.email.strip().lower():
        return ""
    zone = ZoneInfo(treatment.clinic.time_zone)
    return (
        f"The mail server refused the address {patient.email} on {timezone.localtime(failed_at, zone):%Y-%m-%d %H:%M} "
        f"(clinic's time, {zone.key}), answering “{reminder.last_error}”: correct the patient's email first, then resend."
    )


def resendable_after_refusal(patient: Patient) -> list[Reminder]:
    """The patient's failed reminders whose address the server refused, now that their email is another one.

    What to tell staff who corrected the email: these can be resent (``resend_reminder``).
    Nothing while no email can reach the patient at all (``email_block_reason``).
    """
    if email_block_reason(patient):
        return []
    failed = list(
        Reminder.objects.filter(treatment__patient=patient, status=Reminder.Status.FAILED)
        .exclude(treatment__status=Treatment.Status.CANCELLED).select_related("treatment__clinic").order_by("due_at")
    )
    refused = [row for row in failed if refused_permanently(row)]
    if not refused:
        return []
    emails = email_history(patient)
    for row in refused:
        row.treatment.patient = patient
    return [row for row in refused if not resend_refusal(row, emails=emails)]


def email_history(patient: Patient) -> EmailHistory:
    """The patient's email after each save, oldest first: one query, however many reminders ask."""
    history = _history_manager(Patient).filter(id=patient.pk).order_by("history_date", "history_id")
    return list(history.values_list("history_date", "email"))


def _email_at(history: EmailHistory, moment: dt.datetime, *, current: str) -> str:
    """The email as it was at ``moment`` (the current one if the history has none before)."""
    before = [email for saved_at, email in history if saved_at <= moment]
    return before[-1] if before else current


def resend_reminder(
    *, reminder: Reminder, by: Any, request: HttpRequest | None = None, now: dt.datetime | None = None
) -> Reminder:
    """Send a reminder again (sent, failed, skipped or cancelled ones): at the next dispatcher run, or
    at its own time if that is still to come (a reminder cancelled before it was due goes back to it).

    The copy is a new message with a new ``Message-ID``: mail clients drop a
    second message with an ID they already have. It is a new delivery, with its
    own attempts (the retry limit counts from zero again), and the delivery it
    replaces is kept: in the row's ``previous_*`` fields and, for every resend,
    in the access-log entry. A reminder the mail server refused permanently is
    not sent again to the same address (``resend_refusal``).
    """
    now = now or timezone.now()
    treatment = reminder.treatment
    _check_can(by, Capability.MANAGE_REMINDERS, treatment.clinic, "manage reminders")
    if treatment.status == Treatment.Status.CANCELLED:
        raise ValidationError({"reminder": "The treatment was cancelled; its reminders are not sent."})
    if reason := email_block_reason(treatment.patient):
        raise ValidationError({"reminder": f"{reason} The reminder cannot be sent."})
    finished = (Status.SENT, Status.FAILED, Status.SKIPPED, Status.CANCELLED)
    with transaction.atomic():
        # Locked, so what is kept as the previous delivery is what this resend replaces.
        locked = Reminder.objects.select_for_update().filter(pk=reminder.pk, status__in=finished).first()
        if locked is None:
            raise ValidationError({"reminder": "This reminder has not gone out yet; it will be sent when it is due."})
        locked.treatment = treatment
        if reason := resend_refusal(locked):
            raise ValidationError({"reminder": reason})
        replaced, delivery = _new_delivery(locked)
        Reminder.objects.filter(pk=locked.pk).update(
            updated_at=now, **delivery, due_at=Greatest(F("due_at"), Value(now))
        )
        reminder.refresh_from_db()
        record_event(
            actor=by, action="reminder.resend", clinic=treatment.clinic, obj=reminder, request=request,
            detail={
                "treatment": treatment.pk, "resend_count": reminder.resend_count,
                **{f"previous_{field}": value for field, value in replaced.items()},
            },
        )
    return reminder


def cancel_reminder(*, reminder: Reminder, by: Any, request: HttpRequest | None = None) -> Reminder:
    """Stop one reminder that has not gone out yet."""
    treatment = reminder.treatment
    _check_can(by, Capability.MANAGE_REMINDERS, treatment.clinic, "manage reminders")
    changed = Reminder.objects.filter(pk=reminder.pk, status__in=Reminder.PENDING).update(
        updated_at=timezone.now(), status=Status.CANCELLED, lease_until=None, last_error=f"Cancelled by {by.get_username()}."
    )
    if not changed:
        raise ValidationError({"reminder": "Only a reminder that has not been sent yet can be cancelled."})
    record_event(
        actor=by, action="reminder.cancel", clinic=treatment.clinic, obj=reminder, request=request,
        detail={"treatment": treatment.pk},
    )
    reminder.refresh_from_db()
    return reminder


#: "moved" says nothing to whoever reads the timeline later; "patient rebooked by phone" does
MOVE_REASON_MIN_LENGTH = reasons.REASON_MIN_LENGTH
#: the admin's and the API's forms have always stopped at this: a reason for a rebooking is a line, not a letter
MOVE_REASON_MAX_LENGTH = 500
#: a visit whose reminder is still to go out, or went out (the patient is then told the new time)
MOVABLE = (*Reminder.PENDING, Status.SENT)
#: a follow-up visit is booked within this many days of its procedure: a later time is a mistyped year
MOVE_MAX_DAYS_AFTER_PROCEDURE = 365
#: on the clinic's clock, a visit before this time or after ``NIGHT_AFTER`` is most likely 03:00 typed for 15:00
NIGHT_BEFORE, NIGHT_AFTER = dt.time(6, 0), dt.time(22, 0)
CONFIRM_TIME = "Confirm to move the visit to this time all the same."


def move_visit(
    *, reminder: Reminder, occurs_at: Any, reason: str, by: Any, request: HttpRequest | None = None,
    now: dt.datetime | None = None, confirm_time: bool = False,
) -> Reminder:
    """Move one follow-up visit to a new time (the patient rebooked) and time its reminder before it.

    The reminder is due as long before the visit as the step says, out of the
    quiet hours, as the timeline times it (at once if that is past). Only a
    visit whose reminder is pending or sent, of a treatment not cancelled, to a
    time still to come. A reminder already sent, or already tried (awaiting a
    retry), goes out as a new delivery (as a resend: the one it replaces stays
    in ``previous_*`` and in the access log), and its invitation keeps its UID
    with a higher SEQUENCE (``move_count``), so the patient's calendar moves
    the event instead of adding a second. The row is
    marked moved (``moved_at``): recomputing the treatment's timeline keeps the
    visit at this time. The old time and the reason are kept on the row (the
    latest move) and in the access log (``reminder.visit_moved``, every move).

    A time more than ``MOVE_MAX_DAYS_AFTER_PROCEDURE`` after the procedure is
    refused. One whose reminder the quiet hours would hold back until after the
    visit, or at night on the clinic's clock (``move_doubts``), is moved only
    with ``confirm_time``: the visit may really be then, but staff must know.
    """
    now = now or timezone.now()
    treatment = reminder.treatment
    _check_can(by, Capability.MANAGE_REMINDERS, treatment.clinic, "manage reminders")
    reason = " ".join((reason or "").split())
    errors = _Errors()
    if reminder.step.kind != StepKind.FOLLOW_UP_VISIT:
        errors.add("reminder", f"Only a follow-up visit can be moved; “{reminder.step.title}” is "
                               f"{reminder.step.get_kind_display().lower()}.")
    if treatment.status == Treatment.Status.CANCELLED:
        errors.add("reminder", "The treatment was cancelled; its visits are not moved.")
    if not isinstance(occurs_at, dt.datetime) or timezone.is_naive(occurs_at):
        errors.add("occurs_at", "Give a date and time with its time zone.")
    elif occurs_at <= now:
        errors.add("occurs_at", "The new time is already past; give the time the patient is coming.")
    elif _days_after_procedure(treatment, occurs_at) > MOVE_MAX_DAYS_AFTER_PROCEDURE:
        errors.add("occurs_at", _too_long_after(treatment, occurs_at))
    if len(reason) < MOVE_REASON_MIN_LENGTH:
        errors.add("reason", reasons.too_short(why="Say why the visit moves", example="patient rebooked by phone"))
    elif len(reason) > MOVE_REASON_MAX_LENGTH:
        errors.add("reason", reasons.too_long(reason, limit=MOVE_REASON_MAX_LENGTH))
    errors.raise_if_any()
    with transaction.atomic():
        # Locked, so the time kept as the old one, and a delivery kept as the previous one, are what this replaces.
        locked = Reminder.objects.select_for_update().get(pk=reminder.pk)
        if locked.status not in MOVABLE:
            raise ValidationError({"reminder": _unmovable(locked)})
        if locked.occurs_at == occurs_at:
            raise ValidationError({"occurs_at": "The visit is already at that time."})
        was_sent = locked.status == Status.SENT
        # A delivery already tried (sent, or awaiting a retry after "451 …") is replaced and kept, as a resend keeps
        # it; it also gets a new Message-ID, since an attempt that seemed to fail may have arrived with the old time.
        replaced, delivery = _new_delivery(locked) if was_sent or locked.attempts else ({}, dict(_FRESH_DELIVERY))
        due_at = reminder_due_for(treatment=treatment, step=reminder.step, occurs_at=occurs_at, now=now)
        doubts = move_doubts(treatment=treatment, occurs_at=occurs_at, due_at=due_at)
        if doubts and not confirm_time:
            raise ValidationError({"occurs_at": doubts, "confirm_time": CONFIRM_TIME})
        # A queued row's send task finds it no longer queued and stops; the dispatcher claims it again when due.
        Reminder.objects.filter(pk=locked.pk).update(
            updated_at=timezone.now(), **delivery, occurs_at=occurs_at, due_at=due_at, moved_at=now, moved_from=locked.occurs_at,
            move_reason=reason, move_count=F("move_count") + 1,
        )
        reminder.refresh_from_db()
        record_event(
            actor=by, action="reminder.visit_moved", clinic=treatment.clinic, obj=reminder, request=request,
            detail={
                "treatment": treatment.pk, "previous_occurs_at": locked.occurs_at, "occurs_at": reminder.occurs_at,
                "previous_due_at": locked.due_at, "due_at": reminder.due_at, "reason": reason,
                "move_count": reminder.move_count, "sent_again": was_sent, "confirmed_doubts": doubts,
                **{f"previous_{field}": value for field, value in replaced.items()},
            },
        )
    return reminder


def move_doubts(*, treatment: Treatment, occurs_at: dt.datetime, due_at: dt.datetime) -> list[str]:
    """Why a visit at ``occurs_at``, reminded at ``due_at``, may be a mistake: staff confirm it or choose again.

    The reminder of a visit is pointless once the visit has begun, and quiet
    hours are about emails, not opening hours: a visit at night is allowed, but
    is more likely a slip of the hour than a booking.
    """
    doubts = []
    if due_at > occurs_at:
        zone, quiet = _reminder_clock(treatment)
        doubts.append(
            f"Its reminder would go out {timezone.localtime(due_at, zone):%a %Y-%m-%d %H:%M} (patient's time, "
            f"{zone.key}), after the visit itself ({timezone.localtime(occurs_at, zone):%H:%M} on their clock): the "
            f"quiet hours, {quiet.start:%H:%M} to {quiet.end:%H:%M}, hold reminders back. Choose a later time, or "
            "confirm this one and tell the patient yourself."
        )
    if at_night(treatment, occurs_at):
        clinic_zone = ZoneInfo(treatment.clinic.time_zone)
        doubts.append(
            f"{timezone.localtime(occurs_at, clinic_zone):%a %Y-%m-%d %H:%M} is at night on the clinic's clock "
            f"({clinic_zone.key}): check the hour (a.m. or p.m.?), or confirm that the patient comes then."
        )
    return doubts


def at_night(treatment: Treatment, moment: dt.datetime) -> bool:
    """Whether ``moment`` is before ``NIGHT_BEFORE`` or after ``NIGHT_AFTER`` on the clinic's clock."""
    local = timezone.localtime(moment, ZoneInfo(treatment.clinic.time_zone)).time()
    return local < NIGHT_BEFORE or local > NIGHT_AFTER


def _days_after_procedure(treatment: Treatment, moment: dt.datetime) -> int:
    """Calendar days from the procedure's day to ``moment``'s, on the clinic's clock."""
    zone = ZoneInfo(treatment.clinic.time_zone)
    return (timezone.localtime(moment, zone).date() - timezone.localtime(treatment.ended_at, zone).date()).days


def _too_long_after(treatment: Treatment, occurs_at: dt.datetime) -> str:
    zone = ZoneInfo(treatment.clinic.time_zone)
    days = _days_after_procedure(treatment, occurs_at)
    return (f"{timezone.localtime(occurs_at, zone):%a %Y-%m-%d} is {days} days after the procedure (on "
            f"{timezone.localtime(treatment.ended_at, zone):%a %Y-%m-%d}, clinic's time); a follow-up visit is at "
            f"most {MOVE_MAX_DAYS_AFTER_PROCEDURE} days after it. Check the year.")


def _unmovable(reminder: Reminder) -> str:
    if reminder.status == Status.SENDING:
        return "The reminder is being sent right now; try again in a minute."
    return (f"Only a visit whose reminder is still to go out or was sent can be moved; this one is "
            f"{reminder.get_status_display().lower()}.")


def record_step_done(*, reminder: Reminder, now: dt.datetime | None = None) -> bool:
    """The patient says they did the step (adherence). True the first time, False if already recorded."""
    now = now or timezone.now()
    changed = Reminder.objects.filter(pk=reminder.pk, done_at__isnull=True).update(updated_at=now, done_at=now)
    reminder.refresh_from_db(fields=["done_at"])
    return changed == 1


# --- reading the timeline ------------------------------------------------------------


#: Where a timeline entry's time comes from: the protocol (and the reminder row), or a recorded application.
PLANNED, RECORDED = "planned", "recorded"


@dataclass(frozen=True)
class TimelineEntry:
    step: ProtocolStep
    occurrence: int
    # When the step happened or happens: the recorded time of an in-clinic application, else the planned one.
    occurs_at: dt.datetime
    due_at: dt.datetime | None
    state: str
    reminder: Reminder | None
    # The quiet hours moved the email past the step: staff may want to call the patient instead.
    arrives_after_step: bool = False
    planned_at: dt.datetime | None = None
    time_source: str = PLANNED
    # An avoidance step's end: the patient-local date of its "avoid until" day.
    avoid_until: dt.date | None = None
    # Why staff cannot resend the reminder now (the address was refused), "" when they can.
    resend_refusal: str = ""

    @property
    def state_label(self) -> str:
        if self.state == "done" and self.step.kind == StepKind.AVOIDANCE:
            return "Read (patient confirmed)"  # the email's "Got it": an avoidance is not something done
        return STATE_LABELS[self.state]


STATE_LABELS = {
    "done": "Done (patient confirmed)",
    "sent": "Sent",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "skipped": "Skipped",
    "sending": "Being sent",
    "retrying": "Awaiting retry",
    "due": "Due",
    "upcoming": "Upcoming",
    "past": "Past (no email)",
    "applied": "Applied (recorded)",
}
_STATE_OF_STATUS = {
    Status.SENT: "sent", Status.FAILED: "failed", Status.CANCELLED: "cancelled", Status.SKIPPED: "skipped",
    Status.QUEUED: "sending", Status.SENDING: "sending", Status.AWAITING_RETRY: "retrying",
}


def _state(
    *, reminder: Reminder | None, occurs_at: dt.datetime, cancelled: bool, now: dt.datetime, applied: bool = False
) -> str:
    if reminder is None:
        if applied:
            return "applied"  # recorded as done, even where "+5 minutes" is a few minutes ahead of now
        if cancelled:
            return "cancelled"
        return "past" if occurs_at <= now else "upcoming"
    if reminder.done_at is not None:
        return "done"
    if reminder.status in _STATE_OF_STATUS:
        return _STATE_OF_STATUS[reminder.status]
    return "due" if reminder.due_at <= now else "upcoming"


def _applied_times(
    treatment: Treatment, *, steps: dict[int, ProtocolStep], occurrences: list[Occurrence]
) -> dict[tuple[int, int], dt.datetime]:
    if not any(step.kind == StepKind.IN_CLINIC_APPLICATION for step in steps.values()):
        return {}  # no query for a protocol without an in-clinic application
    # Loaded through the treatment, so each application's ``treatment`` is this one (no query per row).
    applications = treatment.applications.select_related("lot")
    return recorded_application_times(steps=steps, occurrences=occurrences, applications=applications)


def timeline_for(*, treatment: Treatment, now: dt.datetime | None = None) -> list[TimelineEntry]:
    """The treatment's timeline for staff: every step occurrence, with its reminder row where there is one."""
    now = now or timezone.now()
    steps = {step.pk: step for step in treatment.protocol_version.steps.all()}
    # Through the treatment, so each row's ``treatment`` is this one (resend_refusal reads the patient).
    rows = {(row.step_id, row.occurrence): row for row in treatment.reminders.all()}
    # A bounced address fails every reminder of the patient: their email history is read once, not once a row.
    refused = [row for row in rows.values() if refused_permanently(row)]
    emails = email_history(treatment.patient) if refused else []
    refusals = {row.pk: resend_refusal(row, emails=emails) for row in refused}
    cancelled = treatment.status == Treatment.Status.CANCELLED
    zone = ZoneInfo(treatment.patient.zone_name)
    occurrences = planned_occurrences(treatment, steps=list(steps.values()))
    applied = _applied_times(treatment, steps=steps, occurrences=occurrences)
    entries = []
    for occurrence in occurrences:
        key = (occurrence.step_id, occurrence.occurrence)
        row = rows.get(key)
        planned_at = row.occurs_at if row else occurrence.occurs_at
        occurs_at = applied.get(key, planned_at)
        # A retry or a resend also moves due_at past the step; only the planned due time says quiet hours did.
        late = row is not None and row.due_at > planned_at and occurrence.due_at > occurrence.occurs_at
        step = steps[occurrence.step_id]
        entries.append(
            TimelineEntry(
                step=step, occurrence=occurrence.occurrence, occurs_at=occurs_at,
                due_at=row.due_at if row else None, reminder=row,
                state=_state(reminder=row, occurs_at=occurs_at, cancelled=cancelled, now=now, applied=key in applied),
                arrives_after_step=late,
                planned_at=planned_at, time_source=RECORDED if key in applied else PLANNED,
                avoid_until=avoidance_end(avoid_until_day=step.avoid_until_day, ended_at=treatment.ended_at, zone=zone),
                resend_refusal=refusals.get(row.pk, "") if row else "",
            )
        )
    return sorted(entries, key=lambda entry: (entry.occurs_at, entry.step.order, entry.occurrence))
