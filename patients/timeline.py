"""A protocol's steps turned into one patient's timeline: pure functions, no database.

Rules (DESIGN.md, "Time"):

* Offsets in minutes or hours are elapsed time from the end of the procedure
  ("+30 minutes" is 30 real minutes later, whatever the clocks do).
* "Day N at HH:MM" and offsets in whole days are patient-local wall-clock
  time: day 3 at 20:00 is 20:00 on the patient's clock even when a
  daylight-saving change happened in between.
* A local time that does not exist that day (the clocks jumped over it) moves
  to the next valid minute; one that happens twice (the clocks went back)
  takes the first of the two (``fold=0``).
* A repeating step repeats at the same local wall-clock time every N days.
* The reminder goes out ``remind_minutes_before`` the step, then is moved out
  of the clinic's quiet hours (in the patient's zone) to the end of the quiet
  period.
* An avoidance ("no retinoids until day 5") lasts until the end of its last
  day on the patient's clock; until then its reminder still has something to
  say, however late it goes out.

Every instant returned is an aware ``datetime`` in UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo

UTC = dt.UTC
# Real gaps are at most two hours (one to two in practice); walking a whole
# day minute by minute without finding a valid time means a broken zone.
_MAX_GAP_MINUTES = 24 * 60
_MINUTES_PER_UNIT = {"minutes": 1, "hours": 60}


class StepTiming(Protocol):
    """What the timeline reads from a step (``protocols.models.ProtocolStep`` fits)."""

    pk: int | None
    timing: str
    offset_value: int | None
    offset_unit: str
    day: int | None
    local_time: dt.time | None
    repeat_count: int
    repeat_every_days: int | None
    remind_minutes_before: int
    sends_reminder: bool
    avoid_until_day: int | None


@dataclass(frozen=True)
class QuietHours:
    """No reminder goes out from ``start`` until ``end`` (patient-local); may wrap midnight."""

    start: dt.time
    end: dt.time

    @property
    def wraps_midnight(self) -> bool:
        return self.start > self.end

    def contains(self, moment: dt.time) -> bool:
        if self.start == self.end:
            return False
        if self.wraps_midnight:
            return moment >= self.start or moment < self.end
        return self.start <= moment < self.end


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of one step: when it happens and when its reminder is due (UTC)."""

    step_id: int
    occurrence: int
    occurs_at: dt.datetime
    due_at: dt.datetime
    sends_reminder: bool
    # When an avoidance is over: its reminder has something to say until then. None for a step of one moment,
    # whose reminder is worth sending only around its time.
    avoidance_over_at: dt.datetime | None = None


def _wall_time_exists(aware: dt.datetime, zone: ZoneInfo) -> bool:
    round_trip = aware.astimezone(UTC).astimezone(zone)
    return round_trip.replace(tzinfo=None) == aware.replace(tzinfo=None)


def local_instant(*, day: dt.date, at: dt.time, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant at which the wall clock in ``zone`` shows ``at`` on ``day``.

    A wall time inside a spring-forward gap moves to the next minute that
    exists; one inside a fall-back overlap is the first of its two instants.
    """
    wall = dt.datetime.combine(day, at.replace(tzinfo=None, fold=0))
    for _ in range(_MAX_GAP_MINUTES):
        # fold=0 picks the earlier of two instants when the wall time repeats.
        aware = wall.replace(tzinfo=zone, fold=0)
        if _wall_time_exists(aware, zone):
            return aware.astimezone(UTC)
        wall = wall.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    raise ValueError(f"No valid local time near {day} {at} in {zone.key}")


def shift_out_of_quiet_hours(*, due_at: dt.datetime, zone: ZoneInfo, quiet: QuietHours | None) -> dt.datetime:
    """``due_at`` or, if it falls inside the quiet hours in ``zone``, the end of that quiet period."""
    if quiet is None:
        return due_at
    local = due_at.astimezone(zone)
    if not quiet.contains(local.time().replace(tzinfo=None)):
        return due_at
    end_day = local.date()
    if quiet.wraps_midnight and local.time() >= quiet.start:
        end_day += dt.timedelta(days=1)  # evening part: quiet ends tomorrow morning
    return local_instant(day=end_day, at=quiet.end, zone=zone)


def _first_occurrence(step: StepTiming, *, ended_at: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    if step.timing == "local_time":
        if step.day is None or step.local_time is None:
            raise ValueError(f"Step {step.pk} is timed by local time but has no day or time")
        return local_instant(day=protocol_date(day=step.day, ended_at=ended_at, zone=zone), at=step.local_time, zone=zone)
    if step.offset_value is None:
        raise ValueError(f"Step {step.pk} is timed by offset but has no offset")
    if step.offset_unit == "days":
        # Whole days keep the wall-clock time of the end of the procedure.
        day = protocol_date(day=step.offset_value, ended_at=ended_at, zone=zone)
        return local_instant(day=day, at=ended_at.astimezone(zone).time().replace(tzinfo=None), zone=zone)
    minutes = step.offset_value * _MINUTES_PER_UNIT[step.offset_unit]
    return (ended_at + dt.timedelta(minutes=minutes)).astimezone(UTC)


def occurrence_instants(step: StepTiming, *, ended_at: dt.datetime, zone: ZoneInfo) -> list[dt.datetime]:
    """When each occurrence of ``step`` happens (UTC), the first one first."""
    first = _first_occurrence(step, ended_at=ended_at, zone=zone)
    count = max(step.repeat_count or 1, 1)
    if count == 1:
        return [first]
    every = dt.timedelta(days=step.repeat_every_days or 1)
    local_first = first.astimezone(zone)
    wall_time = local_first.time().replace(tzinfo=None)
    return [first] + [
        local_instant(day=local_first.date() + every * index, at=wall_time, zone=zone) for index in range(1, count)
    ]


def reminder_due_at(
    *, occurs_at: dt.datetime, remind_minutes_before: int, zone: ZoneInfo, quiet: QuietHours | None
) -> dt.datetime:
    """When the reminder for a step happening at ``occurs_at`` goes out."""
    due = occurs_at - dt.timedelta(minutes=remind_minutes_before or 0)
    return shift_out_of_quiet_hours(due_at=due, zone=zone, quiet=quiet)


def build_timeline(
    *, steps: list[StepTiming], ended_at: dt.datetime, zone: ZoneInfo, quiet: QuietHours | None
) -> list[Occurrence]:
    """Every occurrence of every step for a procedure that ended at ``ended_at``, in time order."""
    if ended_at.tzinfo is None:
        raise ValueError("ended_at must be an aware datetime")
    occurrences = []
    for step in steps:
        over_at = avoidance_over_at(avoid_until_day=step.avoid_until_day, ended_at=ended_at, zone=zone)
        for index, occurs_at in enumerate(occurrence_instants(step, ended_at=ended_at, zone=zone)):
            due_at = reminder_due_at(
                occurs_at=occurs_at, remind_minutes_before=step.remind_minutes_before, zone=zone, quiet=quiet
            )
            occurrences.append(
                Occurrence(
                    step_id=step.pk or 0, occurrence=index, occurs_at=occurs_at, due_at=due_at,
                    sends_reminder=bool(step.sends_reminder), avoidance_over_at=over_at,
                )
            )
    return sorted(occurrences, key=lambda item: (item.occurs_at, item.step_id, item.occurrence))


def protocol_date(*, day: int, ended_at: dt.datetime, zone: ZoneInfo) -> dt.date:
    """The patient-local date of protocol day ``day`` (day 0 is the day the procedure ended, on their clock)."""
    return ended_at.astimezone(zone).date() + dt.timedelta(days=day)


def protocol_day(*, occurs_at: dt.datetime, ended_at: dt.datetime, zone: ZoneInfo) -> int:
    """Which protocol day (0 = the day of the procedure, patient-local) ``occurs_at`` falls on."""
    return (occurs_at.astimezone(zone).date() - protocol_date(day=0, ended_at=ended_at, zone=zone)).days


def avoidance_end(*, avoid_until_day: int | None, ended_at: dt.datetime, zone: ZoneInfo) -> dt.date | None:
    """The patient-local date an avoidance lasts until ("no retinoids until day 5"), None for a step without one."""
    return None if avoid_until_day is None else protocol_date(day=avoid_until_day, ended_at=ended_at, zone=zone)


def avoidance_over_at(*, avoid_until_day: int | None, ended_at: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
    """The instant an avoidance is over (UTC): midnight after its "avoid until" day, on the patient's clock.

    "Until Sunday 10 May (day 5)" includes that Sunday: a patient told so on
    the Sunday still has something to keep to. None for a step without one.
    """
    last_day = avoidance_end(avoid_until_day=avoid_until_day, ended_at=ended_at, zone=zone)
    if last_day is None:
        return None
    return local_instant(day=last_day + dt.timedelta(days=1), at=dt.time(0, 0), zone=zone)
