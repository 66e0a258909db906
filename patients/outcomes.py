"""Recording and correcting outcome assessments and adverse events.

Every write goes through these functions, whether it comes from the admin, the
API, the patient's self-report page or the demo seeder, so the same rules hold
everywhere:

* only clinicians (``Capability.LOG_OUTCOMES``) of the treatment's clinic enter
  or correct clinician scores;
* scores outside their scale are refused with a message that names the scale,
  and nothing is stored;
* a correction edits the row, and simple_history keeps the earlier state with
  who corrected it and why, so the original entry is never lost;
* a correction made on an entry as it was when opened (``based_on``, its revision)
  is refused if someone changed the entry since, so it cannot silently undo theirs;
* an adverse event identical to one already recorded for the treatment (a double
  click, a retried request) is refused with a pointer to the recorded one;
* adverse events of moderate severity or worse email the clinic's clinicians
  once the transaction has committed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Model, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from clinic import reasons
from clinic.audit import record_event
from clinic.history import CORRECTED_BY_PATIENT, SENT_BY_PATIENT
from clinic.roles import Capability
from clinic.scoping import can, can_anywhere
from patients import staff_alerts
from patients.links import consume_link
from patients.models import AdverseEvent, OutcomeAssessment, PatientLink, Treatment, TreatmentArm
from patients.photos import PreparedPhoto, store_photo
from patients.timeline import protocol_day
from protocols.models import ProtocolStep, ProtocolVersion, StepKind

DEFAULT_TIME_POINTS: tuple[int, ...] = (0, 1, 3, 7, 14, 28)
LAST_TIME_POINT_DAY = 730

#: field → (lowest, highest, what the scale is, in words a clinician recognises)
SCALES: dict[str, tuple[int, int, str]] = {
    "erythema": (0, 4, "Erythema (CEA) is scored 0 (clear) to 4 (severe)"),
    "oedema": (0, 4, "Oedema is scored 0 (none) to 4 (severe)"),
    "pain": (0, 10, "Pain is rated 0 (no pain) to 10 (worst imaginable)"),
    "pruritus": (0, 10, "Itching is rated 0 (none) to 10 (worst imaginable)"),
    "gais": (-1, 3, "GAIS is -1 (worse) to 3 (very much improved)"),
    "reepithelialisation_percent": (0, 100, "Re-epithelialisation is a percentage of the area, 0 to 100"),
}
# The Clinician's Erythema Assessment anchors, shown next to the score wherever staff enter it.
ERYTHEMA_ANCHORS: dict[int, str] = {
    0: "clear — clear skin with no signs of erythema",
    1: "almost clear — slight redness",
    2: "mild — mild erythema, definite redness",
    3: "moderate — marked redness",
    4: "severe — fiery redness",
}
OEDEMA_ANCHORS: dict[int, str] = {
    0: "none", 1: "slight — barely perceptible", 2: "mild — visible, well defined", 3: "moderate — raised about 1 mm",
    4: "severe — raised more than 1 mm or spreading beyond the treated area",
}
# The same 0–4 words for patients, with what each looks like in plain language.
PATIENT_REDNESS: dict[int, tuple[str, str]] = {
    0: ("Clear", "My skin looks its usual colour."),
    1: ("Almost clear", "A faint pink tinge I notice only when I look closely."),
    2: ("Mild", "Light pink, easy to see, but not strong."),
    3: ("Moderate", "Clearly red, like a sunburn."),
    4: ("Severe", "Deep, intense red; it may feel hot or burn."),
}
FLAGS = ("reepithelialisation_complete", "applied_as_instructed")
SCORE_FIELDS = (*SCALES, *FLAGS, "problem_flagged", "notes")
CORRECTABLE_FIELDS = (*SCORE_FIELDS, "time_point_day", "phase", "arm")


def patient_redness_word(erythema: int | None) -> str:
    """The word a patient chose for their redness ("Severe"), or "" when they did not rate it."""
    return PATIENT_REDNESS[erythema][0] if erythema is not None else ""


NOTIFY_SEVERITIES = staff_alerts.NOTIFY_SEVERITIES
#: A correction's reason is its history row's change reason, which simple_history keeps in a 100-character column.
REASON_MAX_LENGTH = OutcomeAssessment.history.model._meta.get_field("history_change_reason").max_length
REASON_MIN_LENGTH = reasons.REASON_MIN_LENGTH
#: Notes are a few sentences; 100 kB of them (a pasted document) were accepted from staff and patients alike.
NOTES_MAX_LENGTH = 5000


# --- time points -------------------------------------------------------------------


def step_days(step: ProtocolStep) -> list[int]:
    """The day(s) after the procedure on which a step happens, counting repeats."""
    if step.timing == ProtocolStep.Timing.LOCAL_TIME:
        first = step.day or 0
    else:
        per_unit = {"minutes": 1, "hours": 60, "days": 24 * 60}[step.offset_unit]
        # Floor division: an offset of -30 minutes is on day -1, +30 minutes on day 0.
        first = ((step.offset_value or 0) * per_unit) // (24 * 60)
    every = step.repeat_every_days or 0
    count = step.repeat_count if every else 1
    return [first + n * every for n in range(count)]


def outcome_check_days(steps: Iterable[ProtocolStep]) -> list[int]:
    """Sorted distinct days of the outcome-check steps among ``steps``."""
    days = {day for step in steps if step.kind == StepKind.OUTCOME_CHECK for day in step_days(step)}
    return sorted(day for day in days if day >= 0)


def time_points_for(version: ProtocolVersion) -> list[int]:
    """The days on which outcomes are assessed: the protocol's outcome checks, or the defaults."""
    return outcome_check_days(version.steps.all()) or list(DEFAULT_TIME_POINTS)


def suggested_time_point(*, treatment: Treatment, now: dt.datetime | None = None) -> int:
    """The time point a clinician opening the outcome form most likely means to record.

    The latest of the protocol's time points that has come (patient-local days)
    and has no clinician entry yet; if every passed one has, the next to come.
    """
    now = now or timezone.now()
    zone = ZoneInfo(treatment.patient.zone_name)
    today = protocol_day(occurs_at=now, ended_at=treatment.ended_at, zone=zone)
    days = time_points_for(treatment.protocol_version)
    recorded = set(
        OutcomeAssessment.objects.filter(treatment=treatment, source=OutcomeAssessment.Source.CLINICIAN)
        .values_list("time_point_day", flat=True)
    )
    open_days = [day for day in days if day <= today and day not in recorded]
    if open_days:
        return open_days[-1]
    return next((day for day in days if day > today), days[-1])


# --- validation ---------------------------------------------------------------------


def check_scores(scores: Mapping[str, Any]) -> dict[str, Any]:
    """Check every score against its scale; ValidationError naming each bad field, or the cleaned scores."""
    unknown = set(scores) - set(SCORE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "This is not an outcome field."))
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = dict(scores)
    for name, (low, high, scale) in SCALES.items():
        value = scores.get(name)
        if value is None:
            continue
        # bool is an int in Python; "True" is not a score.
        if isinstance(value, bool) or not isinstance(value, int):
            errors[name] = f"{scale}; {value!r} is not a whole number."
        elif not low <= value <= high:
            errors[name] = f"{scale}; {value} is out of range."
    for name in FLAGS:
        if scores.get(name) not in (None, True, False):
            errors[name] = "Answer yes, no, or leave it empty."
    if "problem_flagged" in scores and not isinstance(scores["problem_flagged"], bool):
        errors["problem_flagged"] = "Answer yes or no."
    if "notes" in scores and not isinstance(scores["notes"], str):
        errors["notes"] = "Notes are text."
    elif len(scores.get("notes") or "") > NOTES_MAX_LENGTH:
        errors["notes"] = f"Keep the notes to {NOTES_MAX_LENGTH} characters (they have {len(scores['notes'])})."
    if errors:
        raise ValidationError(errors)
    _check_reepithelialisation(cleaned)
    return cleaned


def _check_reepithelialisation(scores: dict[str, Any]) -> None:
    complete, percent = scores.get("reepithelialisation_complete"), scores.get("reepithelialisation_percent")
    if complete is True and percent is not None and percent < 100:
        raise ValidationError(
            {"reepithelialisation_percent": f"Complete re-epithelialisation means 100 % of the area, not {percent} %."}
        )
    if complete is False and percent == 100:
        raise ValidationError({"reepithelialisation_complete": "100 % of the area means re-epithelialisation is complete."})
    if complete is None and percent == 100:
        # Re-epithelialised everywhere is complete; record it so days-to-complete can be derived.
        scores["reepithelialisation_complete"] = True


NOTHING_RECORDED = "Enter at least one score or a note: an entry with neither records nothing."


def _check_something_recorded(scores: Mapping[str, Any]) -> None:
    # A clinician's empty entry would count the time point as assessed (and leave an empty row in exports).
    scored = any(scores.get(name) is not None for name in (*SCALES, *FLAGS))
    if not (scored or scores.get("problem_flagged") or (scores.get("notes") or "").strip()):
        raise ValidationError(NOTHING_RECORDED)


def _check_time_point(*, treatment: Treatment, day: Any, phase: str, gais: Any, now: dt.datetime) -> None:
    if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= LAST_TIME_POINT_DAY:
        raise ValidationError({"time_point_day": f"The day must be a whole number from 0 to {LAST_TIME_POINT_DAY}."})
    if phase not in OutcomeAssessment.Phase.values:
        raise ValidationError({"phase": "Choose before, after, or leave it empty."})
    if phase and day != 0:
        raise ValidationError({"phase": "Before/after applies only to day 0, the day of the procedure."})
    if gais is not None and day == 0:
        raise ValidationError({"gais": "GAIS rates change since before the procedure, so it is not scored on day 0."})
    zone = ZoneInfo(treatment.patient.zone_name)
    # Local dates, with a day's grace for time zones: a check cannot be assessed before it happens.
    if treatment.ended_at.astimezone(zone).date() + dt.timedelta(days=day) > now.astimezone(zone).date() + dt.timedelta(days=1):
        raise ValidationError({"time_point_day": f"Day {day} after this procedure has not come yet."})


def _check_arm(*, treatment: Treatment, arm: TreatmentArm | None, required: bool) -> None:
    if arm is not None and arm.treatment_id != treatment.pk:
        raise ValidationError({"arm": "This arm belongs to another treatment."})
    if arm is None and required and treatment.arms.exists():
        raise ValidationError({"arm": "This is a split-face treatment: say which arm (side) the scores are for."})


def _check_treatment(treatment: Treatment) -> None:
    if treatment.status != Treatment.Status.RECORDED:
        raise ValidationError({"treatment": "This treatment was cancelled; outcomes cannot be recorded for it."})


def _require_clinician(user: Any, treatment: Treatment) -> None:
    if not can(user, Capability.LOG_OUTCOMES, treatment.clinic_id):
        raise PermissionDenied("Only clinicians of this clinic may enter or correct clinician scores.")


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if reasons.reason_length(reason) < REASON_MIN_LENGTH:
        raise ValidationError({"correction_reason": reasons.too_short(
            why="Say why the entry is corrected", example="pain entered as 7, patient said 1",
        )})
    if len(reason) > REASON_MAX_LENGTH:
        raise ValidationError({"correction_reason": reasons.too_long(reason, limit=REASON_MAX_LENGTH)})
    return reason


ALREADY_RECORDED_CODE = "already_recorded"


def _duplicate_message(*, day: int, phase: str, arm: TreatmentArm | None) -> str:
    where = f"day {day}" + (f" ({phase})" if phase else "") + (f" for arm {arm.label}" if arm else "")
    return f"Scores for {where} are already recorded; correct that entry instead."


# --- revisions: a correction is made on the record as it was opened ------------------------


class ChangedSinceOpened(ValidationError):
    """Someone changed the record after it was opened (read) for this correction; nothing was saved."""


def current_revision(record: Model) -> int:
    """How many times the record has been saved: 1 when recorded, one more per correction (its history rows).

    Forms and API clients read it with the record and send it back with a
    correction (``based_on``), so a correction made on an older reading is
    refused instead of silently undoing what a colleague changed in between.
    Counted per record, so it says nothing about other records (or clinics).
    """
    return record.history.count()


def with_revisions(records: QuerySet) -> QuerySet:
    """``records`` with each one's ``revision`` (see ``current_revision``) read in the same query."""
    saves = (
        records.model.history.model.objects.filter(id=OuterRef("pk"))
        .order_by().values("id").annotate(saves=Count("history_id")).values("saves")
    )
    return records.annotate(revision=Coalesce(Subquery(saves), 0))


def _hold(rows: QuerySet) -> None:
    """Lock ``rows`` until the surrounding transaction ends (outside one there is nothing to hold).

    A second submission of the same change (a double click, a retried request,
    another tab) then waits here until the first has committed, and the checks
    after this see what the first one saved.
    """
    if transaction.get_connection().in_atomic_block:
        list(rows.select_for_update(no_key=True).values_list("pk", flat=True))


def _staff_name(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else "Someone"


def _check_unchanged_since(record: Model, *, based_on: int | None, by: Any, zone: ZoneInfo) -> None:
    if based_on is None:
        return
    revision = current_revision(record)
    if revision == based_on:
        return
    latest = record.history.select_related("history_user").order_by("-history_id").first()
    if latest is None or based_on > revision:
        raise ChangedSinceOpened("This record has not had that many revisions. Nothing was saved: reload it and try again.")
    who = "You (in another tab or window)" if latest.history_user_id == by.pk else _staff_name(latest.history_user)
    why = f" (reason given: {latest.history_change_reason})" if latest.history_change_reason else ""
    raise ChangedSinceOpened(
        f"{who} changed this record on {latest.history_date.astimezone(zone):%d %b %Y at %H:%M} after you opened it"
        f"{why}. Nothing was saved: reload it to see that change, then make yours again."
    )


# --- clinician assessments ----------------------------------------------------------


def _check_not_recorded(
    *, treatment: Treatment, arm: TreatmentArm | None, day: int, phase: str, other_than: int | None = None
) -> None:
    # The unique constraints are the guarantee; this gives the friendly message first.
    taken = OutcomeAssessment.objects.filter(
        treatment=treatment, arm=arm, time_point_day=day, phase=phase, source=OutcomeAssessment.Source.CLINICIAN
    ).exclude(pk=other_than)
    entry = taken.values_list("pk", flat=True).first()
    if entry is not None:
        # The entry rides along (``params``), so a page can link to where the correction is made.
        raise ValidationError({"time_point_day": ValidationError(
            _duplicate_message(day=day, phase=phase, arm=arm), code=ALREADY_RECORDED_CODE, params={"entry": entry}
        )})


def check_new_assessment(
    *,
    treatment: Treatment,
    by: Any,
    time_point_day: int,
    scores: Mapping[str, Any],
    arm: TreatmentArm | None = None,
    phase: str = "",
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Everything ``record_assessment`` checks, without saving; returns the cleaned scores."""
    now = now or timezone.now()
    _require_clinician(by, treatment)
    _check_treatment(treatment)
    cleaned = check_scores(scores)
    _check_something_recorded(cleaned)
    _check_time_point(treatment=treatment, day=time_point_day, phase=phase, gais=cleaned.get("gais"), now=now)
    _check_arm(treatment=treatment, arm=arm, required=True)
    _check_not_recorded(treatment=treatment, arm=arm, day=time_point_day, phase=phase)
    return cleaned


def record_assessment(
    *,
    treatment: Treatment,
    by: Any,
    time_point_day: int,
    scores: Mapping[str, Any],
    arm: TreatmentArm | None = None,
    phase: str = "",
    now: dt.datetime | None = None,
) -> OutcomeAssessment:
    """Record a clinician's scores for one time point (and arm) of a treatment.

    Raises PermissionDenied unless ``by`` is a clinician of the treatment's
    clinic, and ValidationError (field → message) for out-of-range scores, a
    wrong arm, a day that has not come yet, or a time point already recorded.
    """
    now = now or timezone.now()
    cleaned = check_new_assessment(
        treatment=treatment, by=by, time_point_day=time_point_day, scores=scores, arm=arm, phase=phase, now=now
    )
    assessment = OutcomeAssessment(
        treatment=treatment, arm=arm, time_point_day=time_point_day, phase=phase,
        source=OutcomeAssessment.Source.CLINICIAN, recorded_by=by, recorded_at=now, **cleaned,
    )
    assessment._history_user = by
    try:
        with transaction.atomic():
            assessment.save()
    except IntegrityError:
        # Lost a race with another entry for the same time point.
        raise ValidationError(
            {"time_point_day": _duplicate_message(day=time_point_day, phase=phase, arm=arm)}
        ) from None
    return assessment


def check_correction(
    *,
    assessment: OutcomeAssessment,
    by: Any,
    changes: Mapping[str, Any],
    reason: str,
    based_on: int | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any] | None:
    """Everything ``correct_assessment`` checks, without saving.

    Returns the new field values, or None when ``changes`` change nothing.
    Inside a transaction it holds the entry's row until commit, so two
    corrections of one entry are checked one after the other.
    """
    now = now or timezone.now()
    treatment = assessment.treatment
    _require_clinician(by, treatment)
    if assessment.source != OutcomeAssessment.Source.CLINICIAN:
        raise PermissionDenied("Patient-reported outcomes are corrected only by the patient, through their link.")
    unknown = set(changes) - set(CORRECTABLE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "This field cannot be corrected."))
    _hold(OutcomeAssessment.objects.filter(pk=assessment.pk))
    if all(getattr(assessment, name) == value for name, value in changes.items()):
        return None
    _check_unchanged_since(assessment, based_on=based_on, by=by, zone=ZoneInfo(treatment.clinic.time_zone))
    reason = _check_reason(reason)
    cleaned = check_scores({name: changes.get(name, getattr(assessment, name)) for name in SCORE_FIELDS})
    _check_something_recorded(cleaned)
    day = changes.get("time_point_day", assessment.time_point_day)
    phase = changes.get("phase", assessment.phase)
    arm = changes.get("arm", assessment.arm)
    _check_time_point(treatment=treatment, day=day, phase=phase, gais=cleaned.get("gais"), now=now)
    _check_arm(treatment=treatment, arm=arm, required=True)
    _check_not_recorded(treatment=treatment, arm=arm, day=day, phase=phase, other_than=assessment.pk)
    return {**cleaned, "time_point_day": day, "phase": phase, "arm": arm}


def correct_assessment(
    *,
    assessment: OutcomeAssessment,
    by: Any,
    changes: Mapping[str, Any],
    reason: str,
    based_on: int | None = None,
    now: dt.datetime | None = None,
) -> OutcomeAssessment:
    """Correct a clinician's entry. The earlier state stays in its history, with ``by`` and ``reason``.

    ``based_on`` is the entry's revision (``current_revision``) when the
    correction was started; ChangedSinceOpened if it has changed since. Callers
    acting for a person (the admin, the API) pass it.
    """
    try:
        with transaction.atomic():
            values = check_correction(
                assessment=assessment, by=by, changes=changes, reason=reason, based_on=based_on, now=now
            )
            if values is None:
                return assessment
            for name, value in values.items():
                setattr(assessment, name, value)
            assessment._history_user = by
            assessment._change_reason = reason.strip()
            assessment.save()
    except IntegrityError:
        assessment.refresh_from_db()
        raise ValidationError(
            {"time_point_day": _duplicate_message(day=values["time_point_day"], phase=values["phase"], arm=values["arm"])}
        ) from None
    return assessment


# --- patient self-report ---------------------------------------------------------------

SELF_REPORT_FIELDS = ("erythema", "pain", "pruritus", "applied_as_instructed", "problem_flagged", "notes")
# The history's reason for the patient sending a day's answers again (patient_submissions finds them by it).
PATIENT_CORRECTION = CORRECTED_BY_PATIENT


def patient_submissions(reports: Iterable[OutcomeAssessment]) -> dict[int, tuple[dt.datetime, bool]]:
    """When the patient last sent each of ``reports`` (their self-reports) again, and whether the answers now
    differ from the first ones they sent: two queries on the history, one when nothing was sent again.

    A report the patient never sent again is left out: it was last sent when it was recorded.
    """
    by_pk = {report.pk: report for report in reports}
    sendings = (
        OutcomeAssessment.history.filter(id__in=list(by_pk), history_change_reason=PATIENT_CORRECTION)
        .order_by("history_date", "history_id")
    )
    last = {sending.id: sending.history_date for sending in sendings}  # the latest wins
    if not last:
        return {}
    first = _first_answers(list(last))
    return {
        pk: (at, self_report_answers(by_pk[pk]) != first.get(pk, self_report_answers(by_pk[pk])))
        for pk, at in last.items()
    }


def self_report_answers(report: Any) -> tuple[Any, ...]:
    """A self-report's answers, to compare two sendings: equal answers are the same report sent again."""
    return tuple(getattr(report, name) for name in SELF_REPORT_FIELDS)


def _first_answers(report_ids: list[int]) -> dict[int, tuple[Any, ...]]:
    created = OutcomeAssessment.history.filter(id__in=report_ids, history_type="+")
    return {row.id: self_report_answers(row) for row in created}


def self_report_for(link: PatientLink) -> OutcomeAssessment | None:
    """The patient's earlier answers for this link's treatment and day, if any."""
    return OutcomeAssessment.objects.filter(
        treatment_id=link.treatment_id, time_point_day=link.time_point_day, source=OutcomeAssessment.Source.PATIENT
    ).first()


def record_self_report(
    *, link: PatientLink, answers: Mapping[str, Any], photo: PreparedPhoto | None = None, now: dt.datetime | None = None
) -> tuple[OutcomeAssessment, bool]:
    """Store the patient's answers for the link's time point: the first time, or as a correction.

    Returns the assessment and whether it was created.  There is one
    self-report per treatment and day, so a second submission (through the same
    or another link for that day) edits the first and history keeps both.  The
    same answers sent again, without a photo, change nothing and alert no one.
    ``photo`` is checked before this is called (``photos.prepare_photo``), so
    a bad picture is refused before any answer is stored.
    """
    now = now or timezone.now()
    if link.purpose != PatientLink.Purpose.SELF_REPORT or link.treatment_id is None or link.time_point_day is None:
        raise ValidationError("This link is not for reporting how your skin looks.")
    unknown = set(answers) - set(SELF_REPORT_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "This is not a question on the form."))
    treatment = link.treatment
    _check_treatment(treatment)
    cleaned = check_scores(answers)
    try:
        with transaction.atomic():
            return _save_self_report(link=link, treatment=treatment, cleaned=cleaned, photo=photo, now=now)
    except IntegrityError:
        # Two submissions raced to create the same time point: the loser corrects the winner's row.
        with transaction.atomic():
            return _save_self_report(link=link, treatment=treatment, cleaned=cleaned, photo=photo, now=now)


def _save_self_report(
    *, link: PatientLink, treatment: Treatment, cleaned: dict[str, Any], photo: PreparedPhoto | None, now: dt.datetime
) -> tuple[OutcomeAssessment, bool]:
    existing = (
        OutcomeAssessment.objects.select_for_update()
        .filter(treatment=treatment, time_point_day=link.time_point_day, source=OutcomeAssessment.Source.PATIENT)
        .first()
    )
    if existing is None:
        assessment = OutcomeAssessment(
            treatment=treatment, time_point_day=link.time_point_day, source=OutcomeAssessment.Source.PATIENT,
            recorded_at=now, via_link=link, **cleaned,
        )
        assessment._change_reason = SENT_BY_PATIENT  # the history page names the patient
        newly_flagged = bool(cleaned.get("problem_flagged"))
    else:
        assessment = existing
        # A flag a clinician had reviewed, raised again with new answers, is a new problem to look at.
        newly_flagged = bool(cleaned.get("problem_flagged")) and (
            not existing.problem_flagged or existing.flag_reviewed_at is not None
        )
        sent_before = self_report_answers(existing)
        blank = OutcomeAssessment()
        for name in SELF_REPORT_FIELDS:
            # A question left empty this time is empty: the form always shows every earlier answer.
            setattr(assessment, name, cleaned.get(name, getattr(blank, name)))
        if photo is None and self_report_answers(assessment) == sent_before:
            # A second tap or a re-sent form: no correction to keep, and a reviewed flag stays reviewed.
            consume_link(link)
            return assessment, False
        if assessment.problem_flagged:
            # The review was of the earlier answers (kept in the history); these are unreviewed.
            assessment.flag_reviewed_at, assessment.flag_reviewed_by, assessment.flag_review_note = None, None, ""
        assessment._change_reason = PATIENT_CORRECTION
    assessment.save()
    if photo is not None:
        store_photo(assessment=assessment, photo=photo, uploaded_by=None)
    consume_link(link)
    if newly_flagged:
        staff_alerts.alert_problem_flag(assessment, now=now)
    return assessment, existing is None


# --- problems flagged by patients --------------------------------------------------------

REVIEW_NOTE_MAX_LENGTH = 2000


def flags_unreviewed(reports: QuerySet) -> QuerySet:
    """The patient self-reports among ``reports`` whose problem flag no one has reviewed yet."""
    return reports.filter(source=OutcomeAssessment.Source.PATIENT, problem_flagged=True, flag_reviewed_at__isnull=True)


def may_review_flags(user: Any, clinic: Any) -> bool:
    """Those who act on what patients report: clinicians (who log outcomes) and those who manage reminders."""
    return can(user, Capability.LOG_OUTCOMES, clinic) or can(user, Capability.MANAGE_REMINDERS, clinic)


def may_review_flags_somewhere(user: Any) -> bool:
    """May ``user`` review problems in at least one of their clinics (``may_review_flags``)?"""
    return can_anywhere(user, Capability.LOG_OUTCOMES) or can_anywhere(user, Capability.MANAGE_REMINDERS)


def clean_review_note(note: str | None) -> str:
    """The reviewer's note as it is stored: optional, trimmed, at most ``REVIEW_NOTE_MAX_LENGTH`` characters.

    One rule for every way of reviewing (the treatment's page, the list's bulk
    action, the API), checked before anything is reviewed.
    """
    note = (note or "").strip()
    if len(note) > REVIEW_NOTE_MAX_LENGTH:
        raise ValidationError({"note": f"Keep the note to {REVIEW_NOTE_MAX_LENGTH} characters (it has {len(note)})."})
    return note


def review_problem_flag(
    *, assessment: OutcomeAssessment, by: Any, note: str = "", request: Any = None, now: dt.datetime | None = None
) -> bool:
    """Mark the problem a patient flagged in a self-report as reviewed by ``by``; True if this call did it.

    Already reviewed (a double click, a colleague first) changes nothing and
    returns False, so the first reviewer and their note stay.  The row is held
    until commit, so two reviewers at once are one review.  History keeps the
    unreviewed state, and the review is written to the access log.
    """
    now = now or timezone.now()
    treatment = assessment.treatment
    if not may_review_flags(by, treatment.clinic_id):
        raise PermissionDenied("Only clinicians and staff who manage reminders in this clinic may review a patient's problem.")
    note = clean_review_note(note)
    with transaction.atomic():
        _hold(OutcomeAssessment.objects.filter(pk=assessment.pk))
        # Read afresh, and as the concrete model whatever was passed (the list's proxy rows):
        # history records only saves of OutcomeAssessment itself.
        report = OutcomeAssessment.objects.get(pk=assessment.pk)
        if report.source != OutcomeAssessment.Source.PATIENT or not report.problem_flagged:
            raise ValidationError("This report has no problem flagged by the patient to review.")
        reviewed = report.flag_reviewed_at is None
        if reviewed:
            report.flag_reviewed_at, report.flag_reviewed_by, report.flag_review_note = now, by, note
            report._history_user = by
            report._change_reason = "Problem flagged by the patient reviewed"
            report.save(update_fields=["flag_reviewed_at", "flag_reviewed_by", "flag_review_note"])
            record_event(
                actor=by, action="self_report.flag_reviewed", clinic_id=treatment.clinic_id, obj=report,
                objects=[treatment], request=request, detail={"note": note, "day": report.time_point_day},
            )
    assessment.refresh_from_db(fields=["flag_reviewed_at", "flag_reviewed_by", "flag_review_note"])
    return reviewed


# --- adverse events ------------------------------------------------------------------

ADVERSE_EVENT_FIELDS = ("kind", "severity", "onset_date", "resolution_date", "arm", "description", "action_taken")


def _check_adverse_event(*, treatment: Treatment, values: Mapping[str, Any], today: dt.date) -> None:
    errors: dict[str, str] = {}
    if values.get("kind") not in AdverseEvent.Kind.values:
        errors["kind"] = "Choose the kind of adverse event from the list."
    if values.get("severity") not in AdverseEvent.Severity.values:
        errors["severity"] = "Choose mild, moderate, severe or life-threatening."
    onset, resolution = values.get("onset_date"), values.get("resolution_date")
    treated_on = treatment.ended_at.astimezone(ZoneInfo(treatment.clinic.time_zone)).date()
    if not isinstance(onset, dt.date):
        errors["onset_date"] = "Give the date the event started."
    elif onset < treated_on:
        errors["onset_date"] = f"An adverse event of this treatment cannot start before it ({treated_on:%Y-%m-%d})."
    elif onset > today:
        errors["onset_date"] = "The onset date is in the future."
    if resolution is not None and isinstance(onset, dt.date) and resolution < onset:
        errors["resolution_date"] = "The event cannot resolve before it started."
    if resolution is not None and resolution > today:
        errors["resolution_date"] = "The resolution date is in the future."
    if values.get("kind") == AdverseEvent.Kind.OTHER and not (values.get("description") or "").strip():
        errors["description"] = "Describe the event when its kind is 'other'."
    if errors:
        raise ValidationError(errors)
    _check_arm(treatment=treatment, arm=values.get("arm"), required=False)


class AdverseEventAlreadyRecorded(ValidationError):
    """The same event is already recorded for the treatment (``event``); nothing was saved."""

    def __init__(self, message: str, *, event: AdverseEvent) -> None:
        super().__init__(message, code="already_recorded")
        self.event = event


def _check_not_already_recorded(*, treatment: Treatment, values: Mapping[str, Any]) -> None:
    # A double click or a retried request repeats every one of these; two different
    # events of one day differ in at least one (kind, severity, side, description).
    # No time limit: the same event entered later by a colleague is still the same event,
    # and counting it twice would also inflate the protocol's adverse-event rate.
    recorded = AdverseEvent.objects.filter(
        treatment=treatment, kind=values["kind"], severity=values["severity"], onset_date=values["onset_date"],
        arm=values.get("arm"), description=values.get("description") or "",
    ).select_related("recorded_by").order_by("pk").first()
    if recorded is None:
        return
    recorded_at = recorded.recorded_at.astimezone(ZoneInfo(treatment.clinic.time_zone))
    raise AdverseEventAlreadyRecorded(
        f"This adverse event is already recorded: {recorded.get_kind_display()} "
        f"({recorded.get_severity_display().lower()}), onset {recorded.onset_date:%d %b %Y}, recorded by "
        f"{_staff_name(recorded.recorded_by)} on {recorded_at:%d %b %Y at %H:%M}. Nothing was saved. "
        "Open that event to update it; if this is another event, say in the description how it differs.",
        event=recorded,
    )


def check_new_adverse_event(
    *, treatment: Treatment, by: Any, values: Mapping[str, Any], now: dt.datetime | None = None
) -> None:
    """Everything ``record_adverse_event`` checks, without saving.

    Inside a transaction it holds the treatment's row until commit, so a second
    submission of the same event waits for the first and is then refused.
    """
    now = now or timezone.now()
    _require_clinician(by, treatment)
    _check_treatment(treatment)
    unknown = set(values) - set(ADVERSE_EVENT_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "This is not an adverse-event field."))
    _check_adverse_event(treatment=treatment, values=values, today=_clinic_today(treatment, now))
    _hold(Treatment.objects.filter(pk=treatment.pk))
    _check_not_already_recorded(treatment=treatment, values=values)


def _clinic_today(treatment: Treatment, now: dt.datetime) -> dt.date:
    return now.astimezone(ZoneInfo(treatment.clinic.time_zone)).date()


def record_adverse_event(
    *,
    treatment: Treatment,
    by: Any,
    kind: str,
    severity: str,
    onset_date: dt.date,
    resolution_date: dt.date | None = None,
    arm: TreatmentArm | None = None,
    description: str = "",
    action_taken: str = "",
    now: dt.datetime | None = None,
) -> AdverseEvent:
    """Record an adverse event of a treatment; moderate or worse emails the clinic's clinicians after commit.

    AdverseEventAlreadyRecorded if the same event is already recorded for the treatment.
    """
    now = now or timezone.now()
    values = {
        "kind": kind, "severity": severity, "onset_date": onset_date, "resolution_date": resolution_date,
        "arm": arm, "description": description, "action_taken": action_taken,
    }
    with transaction.atomic():
        check_new_adverse_event(treatment=treatment, by=by, values=values, now=now)
        event = AdverseEvent(treatment=treatment, recorded_by=by, recorded_at=now, **values)
        event._history_user = by
        event.save()
        if severity in NOTIFY_SEVERITIES:
            # In the same transaction: no event without its alert, no email about an event rolled back.
            staff_alerts.alert_adverse_event(event, now=now)
    return event


def check_adverse_event_correction(
    *,
    event: AdverseEvent,
    by: Any,
    changes: Mapping[str, Any],
    reason: str,
    based_on: int | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any] | None:
    """Everything ``correct_adverse_event`` checks; the new values, or None when nothing changes.

    Inside a transaction it holds the event's row until commit, as ``check_correction`` does.
    """
    now = now or timezone.now()
    _require_clinician(by, event.treatment)
    unknown = set(changes) - set(ADVERSE_EVENT_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "This field cannot be corrected."))
    _hold(AdverseEvent.objects.filter(pk=event.pk))
    if all(getattr(event, name) == value for name, value in changes.items()):
        return None
    _check_unchanged_since(event, based_on=based_on, by=by, zone=ZoneInfo(event.treatment.clinic.time_zone))
    _check_reason(reason)
    values = {name: changes.get(name, getattr(event, name)) for name in ADVERSE_EVENT_FIELDS}
    _check_adverse_event(treatment=event.treatment, values=values, today=_clinic_today(event.treatment, now))
    return values


def correct_adverse_event(
    *,
    event: AdverseEvent,
    by: Any,
    changes: Mapping[str, Any],
    reason: str,
    based_on: int | None = None,
    now: dt.datetime | None = None,
) -> AdverseEvent:
    """Update an adverse event (e.g. its resolution); history keeps the earlier state with who and why.

    An event raised to moderate or worse that has not been notified yet is notified after commit.
    ``based_on`` works as in ``correct_assessment``.
    """
    with transaction.atomic():
        values = check_adverse_event_correction(
            event=event, by=by, changes=changes, reason=reason, based_on=based_on, now=now
        )
        if values is None:
            return event
        for name, value in values.items():
            setattr(event, name, value)
        event._history_user = by
        event._change_reason = reason.strip()
        event.save()
        if event.severity not in NOTIFY_SEVERITIES:
            staff_alerts.cancel_for_downgraded(event)  # corrected to mild before anyone was told: nobody is
        elif event.notified_at is None and not staff_alerts.adverse_event_alert_open(event):
            staff_alerts.alert_adverse_event(event, now=now)
    return event
