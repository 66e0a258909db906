"""Protocol step timing arithmetic and the one step validator.

The admin (``ProtocolStep.clean``) and the API serializer both call
``validate_step`` so a step is refused with the same message everywhere.
Days here are protocol days counted from the end of the procedure (day 0);
the patient-local, DST-correct instants are computed by ``patients.timeline``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import ValidationError

MINUTES_PER_UNIT = {"minutes": 1, "hours": 60, "days": 24 * 60}
MINUTES_PER_DAY = 24 * 60

# A step may begin before the procedure (e.g. antiviral prophylaxis from day -1),
# but not so early that it belongs to a consultation rather than the aftercare.
EARLIEST_DAY = -14
# A reminder sent more than a week before its step is no longer a reminder.
MAX_REMIND_MINUTES_BEFORE = 7 * MINUTES_PER_DAY

APPLICATION_KINDS = frozenset({"in_clinic_application", "home_application"})
AVOIDANCE_KIND = "avoidance"

_Add = Callable[[str, str], None]


@dataclass(frozen=True)
class StepInput:
    """The timing-relevant values of a step, however they arrived (form, API, fixture)."""

    kind: str
    timing: str
    offset_value: int | None = None
    offset_unit: str = "minutes"
    day: int | None = None
    local_time: dt.time | None = None
    repeat_count: int = 1
    repeat_every_days: int | None = None
    avoid_until_day: int | None = None
    has_product: bool = False
    sends_reminder: bool = True
    remind_minutes_before: int | None = 0


def start_day(step: StepInput) -> float | None:
    """The first occurrence as a fractional protocol day, or None when the timing is incomplete."""
    if step.timing == "offset":
        if step.offset_value is None or step.offset_unit not in MINUTES_PER_UNIT:
            return None
        return step.offset_value * MINUTES_PER_UNIT[step.offset_unit] / MINUTES_PER_DAY
    if step.day is None:
        return None
    minutes = step.local_time.hour * 60 + step.local_time.minute if step.local_time else 0
    return step.day + minutes / MINUTES_PER_DAY


def occurrence_days(step: StepInput) -> list[float]:
    """Every occurrence as a fractional protocol day (one entry for a step that does not repeat)."""
    first = start_day(step)
    if first is None:
        return []
    count = max(step.repeat_count or 1, 1)
    every = step.repeat_every_days or 0
    return [first + index * every for index in range(count)]


def day_number(fractional_day: float) -> int:
    """The calendar protocol day a fractional day falls on (day -1 at 09:00 is day -1)."""
    return math.floor(fractional_day)


def step_errors(step: StepInput, *, length_days: int) -> dict[str, list[str]]:
    """Every problem with ``step`` in a protocol of ``length_days`` days, by field name."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    _check_timing(step, add)
    _check_repeat(step, add)
    if not errors:
        _check_span(step, length_days=length_days, add=add)
    _check_avoidance(step, length_days=length_days, add=add)
    if step.has_product and step.kind not in APPLICATION_KINDS:
        add("product", "Only application steps (in clinic or at home) name a product.")
    _check_reminder(step, add)
    return errors


def validate_step(step: StepInput, *, length_days: int) -> None:
    """Raise a ``ValidationError`` keyed by field when ``step`` is not a possible step."""
    errors = step_errors(step, length_days=length_days)
    if errors:
        raise ValidationError(errors)


def _check_timing(step: StepInput, add: _Add) -> None:
    if step.timing == "offset":
        if step.offset_value is None:
            add("offset_value", "A step timed from the end of the procedure needs an offset, e.g. 30 minutes.")
        if step.day is not None:
            add("day", "A step timed by offset has no day; clear the day or switch to 'day N at a local time'.")
        if step.local_time is not None:
            add("local_time", "A step timed by offset has no local time; clear it or switch to 'day N at a local time'.")
    elif step.timing == "local_time":
        if step.day is None:
            add("day", "A step at a patient-local time needs a day (0 is the day of the procedure).")
        if step.local_time is None:
            add("local_time", "A step at a patient-local time needs a time of day (HH:MM).")
        if step.offset_value is not None:
            add("offset_value", "A step at a patient-local time has no offset; clear the offset.")
    else:
        add("timing", f"Unknown timing {step.timing!r}.")


def _check_repeat(step: StepInput, add: _Add) -> None:
    if step.repeat_count is None or step.repeat_count < 1:
        add("repeat_count", "A step happens at least once (repeat count 1 or more).")
        return
    if step.repeat_count > 1 and (step.repeat_every_days is None or step.repeat_every_days < 1):
        add("repeat_every_days", "A repeating step needs 'repeat every' of at least 1 day.")


def _check_span(step: StepInput, *, length_days: int, add: _Add) -> None:
    days = occurrence_days(step)
    if not days:
        return
    first, last = day_number(days[0]), day_number(days[-1])
    field = "offset_value" if step.timing == "offset" else "day"
    if first < EARLIEST_DAY:
        add(field, f"The step starts on day {first}; a step may start at most {-EARLIEST_DAY} days before the procedure.")
    if last > length_days:
        if len(days) > 1:
            add(
                "repeat_count",
                f"The last repeat falls on day {last}, after the protocol ends on day {length_days}.",
            )
        else:
            add(field, f"The step falls on day {last}, after the protocol ends on day {length_days}.")


def _check_avoidance(step: StepInput, *, length_days: int, add: _Add) -> None:
    if step.avoid_until_day is None:
        if step.kind == AVOIDANCE_KIND:
            # The patient is told what to avoid until when; an open-ended avoidance tells them nothing to plan by.
            add("avoid_until_day", "An avoidance needs an end: say until which day, e.g. 5 for no retinoids until day 5.")
        return
    if step.kind != AVOIDANCE_KIND:
        add("avoid_until_day", "Only avoidance steps have an 'avoid until' day.")
        return
    first = start_day(step)
    if first is not None and step.avoid_until_day < day_number(first):
        add(
            "avoid_until_day",
            f"The avoidance cannot end on day {step.avoid_until_day}, before it starts on day {day_number(first)}.",
        )
    elif first is not None and step.avoid_until_day == day_number(first):
        # "Avoid until day 0" from day 0 asks nothing of the patient: a typing mistake, not an avoidance.
        add(
            "avoid_until_day",
            f"The avoidance starts on day {step.avoid_until_day}, so it cannot also end then: "
            f"avoid until day {step.avoid_until_day + 1} or later.",
        )
    if step.avoid_until_day > length_days:
        add(
            "avoid_until_day",
            f"The avoidance lasts until day {step.avoid_until_day}, after the protocol ends on day {length_days}; "
            "lengthen the protocol first.",
        )


def _check_reminder(step: StepInput, add: _Add) -> None:
    minutes = step.remind_minutes_before
    if minutes is None:
        add("remind_minutes_before", "Say how many minutes before the step the reminder goes out (0 for at the time).")
    elif minutes < 0:
        add("remind_minutes_before", "A reminder cannot be sent a negative number of minutes before its step.")
    elif minutes > MAX_REMIND_MINUTES_BEFORE:
        add(
            "remind_minutes_before",
            f"A reminder can go out at most {MAX_REMIND_MINUTES_BEFORE} minutes (7 days) before its step.",
        )
