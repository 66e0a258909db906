"""The pure timeline: steps + procedure end + patient zone + quiet hours → UTC instants."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patients.timeline import (
    QuietHours,
    avoidance_over_at,
    build_timeline,
    local_instant,
    protocol_day,
    shift_out_of_quiet_hours,
)

UTC = dt.UTC
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
SYDNEY = ZoneInfo("Australia/Sydney")
NIGHT = QuietHours(start=dt.time(21, 0), end=dt.time(8, 0))


@dataclass
class Step:
    pk: int = 1
    timing: str = "local_time"
    offset_value: int | None = None
    offset_unit: str = "minutes"
    day: int | None = None
    local_time: dt.time | None = None
    repeat_count: int = 1
    repeat_every_days: int | None = None
    remind_minutes_before: int = 0
    sends_reminder: bool = True
    avoid_until_day: int | None = None


def at(zone: ZoneInfo, *args: int, fold: int = 0) -> dt.datetime:
    return dt.datetime(*args, tzinfo=zone, fold=fold).astimezone(UTC)


def only(steps: list[Step], *, ended_at: dt.datetime, zone: ZoneInfo, quiet: QuietHours | None = None):
    return build_timeline(steps=steps, ended_at=ended_at, zone=zone, quiet=quiet)


# --- local wall-clock time ------------------------------------------------------------


def test_it_keeps_day_n_at_local_time_across_a_spring_forward():
    ended = at(NEW_YORK, 2026, 3, 6, 15, 0)  # Friday, EST
    [occurrence] = only([Step(day=3, local_time=dt.time(20, 0))], ended_at=ended, zone=NEW_YORK)
    assert occurrence.occurs_at == dt.datetime(2026, 3, 10, 0, 0, tzinfo=UTC)  # 20:00 EDT
    assert occurrence.occurs_at.astimezone(NEW_YORK).time() == dt.time(20, 0)


def test_it_keeps_day_n_at_local_time_across_a_fall_back():
    ended = at(BERLIN, 2026, 10, 23, 11, 0)
    [occurrence] = only([Step(day=3, local_time=dt.time(20, 0))], ended_at=ended, zone=BERLIN)
    assert occurrence.occurs_at == dt.datetime(2026, 10, 26, 19, 0, tzinfo=UTC)  # 20:00 CET


def test_it_moves_a_nonexistent_local_time_to_the_next_valid_minute():
    assert local_instant(day=dt.date(2026, 3, 8), at=dt.time(2, 30), zone=NEW_YORK) == dt.datetime(
        2026, 3, 8, 7, 0, tzinfo=UTC
    )  # 03:00 EDT
    assert local_instant(day=dt.date(2026, 3, 29), at=dt.time(2, 15), zone=BERLIN) == dt.datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )  # 03:00 CEST
    assert local_instant(day=dt.date(2026, 10, 4), at=dt.time(2, 59), zone=SYDNEY) == dt.datetime(
        2026, 10, 3, 16, 0, tzinfo=UTC
    )  # 03:00 AEDT


def test_it_takes_the_first_of_an_ambiguous_local_time():
    assert local_instant(day=dt.date(2026, 11, 1), at=dt.time(1, 30), zone=NEW_YORK) == dt.datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC
    )  # 01:30 EDT, not EST
    assert local_instant(day=dt.date(2026, 10, 25), at=dt.time(2, 30), zone=BERLIN) == dt.datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )  # 02:30 CEST
    assert local_instant(day=dt.date(2026, 4, 5), at=dt.time(2, 30), zone=SYDNEY) == dt.datetime(
        2026, 4, 4, 15, 30, tzinfo=UTC
    )  # 02:30 AEDT


def test_it_repeats_at_the_same_local_time_every_day_across_a_clock_change():
    ended = at(BERLIN, 2026, 3, 26, 10, 0)
    step = Step(day=1, local_time=dt.time(20, 0), repeat_count=7, repeat_every_days=1)
    occurrences = only([step], ended_at=ended, zone=BERLIN)
    assert [o.occurrence for o in occurrences] == list(range(7))
    assert {o.occurs_at.astimezone(BERLIN).time() for o in occurrences} == {dt.time(20, 0)}
    assert [o.occurs_at.astimezone(BERLIN).date().day for o in occurrences] == [27, 28, 29, 30, 31, 1, 2]


def test_it_counts_day_0_from_the_patients_local_date_not_utc():
    # 23:30 in Sydney is still the morning of the same day in UTC: day 1 is the next Sydney day.
    ended = at(SYDNEY, 2026, 6, 10, 23, 30)
    [occurrence] = only([Step(day=1, local_time=dt.time(9, 0))], ended_at=ended, zone=SYDNEY)
    assert occurrence.occurs_at.astimezone(SYDNEY) == dt.datetime(2026, 6, 11, 9, 0, tzinfo=SYDNEY)
    assert protocol_day(occurs_at=occurrence.occurs_at, ended_at=ended, zone=SYDNEY) == 1


# --- offsets ------------------------------------------------------------------------------


def test_it_counts_minute_and_hour_offsets_as_elapsed_time_across_a_clock_change():
    ended = at(NEW_YORK, 2026, 3, 8, 1, 30)  # EST, 30 minutes before the jump
    step = Step(timing="offset", offset_value=2, offset_unit="hours")
    [occurrence] = only([step], ended_at=ended, zone=NEW_YORK)
    assert occurrence.occurs_at - ended == dt.timedelta(hours=2)
    assert occurrence.occurs_at.astimezone(NEW_YORK).time() == dt.time(4, 30)  # the wall clock skipped an hour


def test_it_keeps_the_wall_clock_time_for_offsets_in_whole_days():
    ended = at(NEW_YORK, 2026, 3, 7, 15, 0)
    step = Step(timing="offset", offset_value=2, offset_unit="days")
    [occurrence] = only([step], ended_at=ended, zone=NEW_YORK)
    assert occurrence.occurs_at.astimezone(NEW_YORK) == dt.datetime(2026, 3, 9, 15, 0, tzinfo=NEW_YORK)
    assert occurrence.occurs_at - ended == dt.timedelta(hours=47)


def test_it_allows_a_step_before_the_procedure():
    ended = at(BERLIN, 2026, 5, 12, 11, 0)
    [occurrence] = only([Step(day=-1, local_time=dt.time(9, 0))], ended_at=ended, zone=BERLIN)
    assert occurrence.occurs_at == at(BERLIN, 2026, 5, 11, 9, 0)


# --- reminder due times -----------------------------------------------------------------


def test_it_sends_the_reminder_minutes_before_the_step():
    ended = at(BERLIN, 2026, 5, 12, 11, 0)
    step = Step(day=7, local_time=dt.time(15, 0), remind_minutes_before=90)
    [occurrence] = only([step], ended_at=ended, zone=BERLIN, quiet=NIGHT)
    assert occurrence.due_at == at(BERLIN, 2026, 5, 19, 13, 30)
    assert occurrence.occurs_at == at(BERLIN, 2026, 5, 19, 15, 0)


def test_it_moves_a_late_evening_reminder_to_the_end_of_the_quiet_hours_next_morning():
    ended = at(NEW_YORK, 2026, 5, 12, 11, 0)
    [occurrence] = only([Step(day=0, local_time=dt.time(22, 30))], ended_at=ended, zone=NEW_YORK, quiet=NIGHT)
    assert occurrence.occurs_at == at(NEW_YORK, 2026, 5, 12, 22, 30)
    assert occurrence.due_at == at(NEW_YORK, 2026, 5, 13, 8, 0)


def test_it_moves_an_early_morning_reminder_to_the_end_of_the_quiet_hours_that_day():
    ended = at(NEW_YORK, 2026, 5, 12, 11, 0)
    [occurrence] = only([Step(day=2, local_time=dt.time(6, 0))], ended_at=ended, zone=NEW_YORK, quiet=NIGHT)
    assert occurrence.due_at == at(NEW_YORK, 2026, 5, 14, 8, 0)


def test_it_applies_quiet_hours_in_the_patients_zone_not_the_servers():
    # 20:00 in Sydney is 10:00 UTC: fine in Sydney even though a UTC clock says morning.
    ended = at(SYDNEY, 2026, 5, 12, 11, 0)
    [occurrence] = only([Step(day=1, local_time=dt.time(20, 0))], ended_at=ended, zone=SYDNEY, quiet=NIGHT)
    assert occurrence.due_at == occurrence.occurs_at


def test_it_handles_quiet_hours_that_do_not_wrap_midnight():
    lunch = QuietHours(start=dt.time(12, 0), end=dt.time(14, 0))
    due = at(BERLIN, 2026, 5, 12, 12, 30)
    assert shift_out_of_quiet_hours(due_at=due, zone=BERLIN, quiet=lunch) == at(BERLIN, 2026, 5, 12, 14, 0)
    assert shift_out_of_quiet_hours(due_at=at(BERLIN, 2026, 5, 12, 14, 0), zone=BERLIN, quiet=lunch) == at(
        BERLIN, 2026, 5, 12, 14, 0
    )


def test_it_orders_the_timeline_by_time_and_marks_steps_without_reminders():
    ended = at(BERLIN, 2026, 5, 12, 11, 0)
    steps = [
        Step(pk=1, day=7, local_time=dt.time(10, 0)),
        Step(pk=2, timing="offset", offset_value=0, sends_reminder=False),
    ]
    occurrences = only(steps, ended_at=ended, zone=BERLIN)
    assert [o.step_id for o in occurrences] == [2, 1]
    assert [o.sends_reminder for o in occurrences] == [False, True]


def test_it_refuses_a_naive_procedure_end():
    with pytest.raises(ValueError, match="aware"):
        only([Step(day=1, local_time=dt.time(9, 0))], ended_at=dt.datetime(2026, 5, 12, 11, 0), zone=BERLIN)


# --- avoidances ------------------------------------------------------------------------------


def test_an_avoidance_lasts_until_midnight_after_its_last_day_on_the_patients_clock():
    # 00:30 on Tuesday 5 May in Berlin, still Monday in UTC: day 5 is Sunday 10 May in Berlin.
    ended = at(BERLIN, 2026, 5, 5, 0, 30)
    steps = [Step(pk=1, day=0, local_time=dt.time(18, 0), avoid_until_day=5), Step(pk=2, day=0, local_time=dt.time(19, 0))]
    avoidance, cleanse = only(steps, ended_at=ended, zone=BERLIN)
    assert avoidance.avoidance_over_at == at(BERLIN, 2026, 5, 11, 0, 0)
    assert cleanse.avoidance_over_at is None


def test_an_avoidance_ends_at_the_first_minute_of_the_next_day_where_the_clocks_skip_midnight():
    # Santiago springs forward at midnight: 6 September 2026 starts at 01:00.
    santiago = ZoneInfo("America/Santiago")
    over_at = avoidance_over_at(avoid_until_day=4, ended_at=at(santiago, 2026, 9, 1, 12, 0), zone=santiago)
    assert over_at is not None
    assert over_at.astimezone(santiago).replace(tzinfo=None) == dt.datetime(2026, 9, 6, 1, 0)


# --- properties -------------------------------------------------------------------------------

ZONES = st.sampled_from([NEW_YORK, BERLIN, SYDNEY, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Asia/Kolkata")])
TIMES = st.times().map(lambda t: t.replace(second=0, microsecond=0))
DAYS = st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2028, 12, 31))


@settings(max_examples=300, deadline=None)
@given(zone=ZONES, day=DAYS, wall=TIMES)
def test_it_always_lands_on_the_asked_wall_time_or_just_after_a_gap(zone, day, wall):
    instant = local_instant(day=day, at=wall, zone=zone)
    local = instant.astimezone(zone)
    asked = dt.datetime.combine(day, wall)
    landed = local.replace(tzinfo=None)
    assert landed >= asked
    assert landed - asked <= dt.timedelta(hours=1)  # no real gap is longer than an hour in these zones
    if landed != asked:  # only when the asked time does not exist
        assert dt.datetime.combine(day, wall, tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != asked


@settings(max_examples=300, deadline=None)
@given(
    zone=ZONES,
    due=st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2028, 12, 31)),
    start=TIMES,
    end=TIMES,
)
def test_it_never_leaves_a_reminder_inside_the_quiet_hours(zone, due, start, end):
    quiet = QuietHours(start=start, end=end)
    due_at = due.replace(tzinfo=UTC)
    shifted = shift_out_of_quiet_hours(due_at=due_at, zone=zone, quiet=quiet)
    assert shifted >= due_at
    assert shifted - due_at <= dt.timedelta(hours=25)
    assert not quiet.contains(shifted.astimezone(zone).time())
