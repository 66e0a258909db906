"""Which steps' reminders the quiet hours push past the step: the rule, and a check against the real timeline."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from patients.timeline import QuietHours, build_timeline
from protocols.models import ProtocolStep
from protocols.quiet_hours import ClockWindow, late_procedure_ends, late_reminder_warning, late_step_times
from protocols.steps import StepInput

NIGHT = QuietHours(dt.time(21, 0), dt.time(8, 0))  # the default: wraps midnight
SIESTA = QuietHours(dt.time(12, 0), dt.time(14, 0))  # does not wrap
LATE_NIGHT = QuietHours(dt.time(22, 0), dt.time(6, 0))


def _at(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


@pytest.mark.parametrize(("quiet", "minutes_before", "window"), [
    (NIGHT, 0, ("21:00", "08:00")),
    (NIGHT, 60, ("22:00", "08:00")),
    (LATE_NIGHT, 180, ("01:00", "06:00")),  # start + 3 hours crosses midnight
    (SIESTA, 30, ("12:30", "14:00")),
    (SIESTA, 90, ("13:30", "14:00")),
])
def test_it_finds_the_step_times_whose_reminder_is_pushed_past_them(quiet, minutes_before, window):
    assert late_step_times(quiet=quiet, remind_minutes_before=minutes_before) == ClockWindow(*map(_at, window))


@pytest.mark.parametrize(("quiet", "minutes_before"), [(SIESTA, 120), (SIESTA, 24 * 60), (NIGHT, 11 * 60)])
def test_a_reminder_at_least_as_early_as_the_quiet_period_is_long_is_never_late(quiet, minutes_before):
    assert late_step_times(quiet=quiet, remind_minutes_before=minutes_before) is None


@pytest.mark.parametrize(("moment", "inside"), [
    ("21:00", True), ("23:59", True), ("00:00", True), ("07:59", True), ("08:00", False), ("20:59", False),
])
def test_a_window_round_midnight_contains_both_sides_and_not_its_end(moment, inside):
    assert ClockWindow(_at("21:00"), _at("08:00")).contains(_at(moment)) is inside


def test_a_step_two_hours_after_the_procedure_is_late_when_the_procedure_ends_from_19_00_until_06_00():
    ends = late_procedure_ends(quiet=NIGHT, remind_minutes_before=0, offset_minutes=120)
    assert ends == ClockWindow(_at("19:00"), _at("06:00"))
    assert str(ends) == "19:00 and 06:00"


def test_a_local_time_step_in_the_early_morning_is_warned_about_with_its_times():
    step = StepInput(kind="instruction", timing="local_time", day=1, local_time=dt.time(7, 0), remind_minutes_before=30)
    assert late_reminder_warning(step, quiet=NIGHT) == (
        "its reminder would be due at 06:30, inside the quiet hours 21:00–08:00, so it goes out at 08:00: "
        "after the step at 07:00."
    )


def test_an_offset_step_is_warned_about_with_the_procedure_end_times():
    step = StepInput(kind="instruction", timing="offset", offset_value=2, offset_unit="hours")
    assert late_reminder_warning(step, quiet=NIGHT) == (
        "if the procedure ends between 19:00 and 06:00 (patient's time), its reminder falls in the quiet hours "
        "21:00–08:00 and goes out at 08:00, after the step."
    )


def test_an_offset_in_whole_days_keeps_the_procedures_time_of_day():
    step = StepInput(kind="instruction", timing="offset", offset_value=3, offset_unit="days", remind_minutes_before=60)
    assert "ends between 22:00 and 08:00" in late_reminder_warning(step, quiet=NIGHT)


@pytest.mark.parametrize("step", [
    StepInput(kind="instruction", timing="local_time", day=1, local_time=dt.time(9, 0)),  # after quiet hours
    StepInput(kind="instruction", timing="local_time", day=1, local_time=dt.time(21, 30), remind_minutes_before=60),
    StepInput(kind="instruction", timing="local_time", day=1, local_time=dt.time(7, 0), sends_reminder=False),
    StepInput(kind="instruction", timing="offset", offset_value=1, offset_unit="days", remind_minutes_before=11 * 60),
    StepInput(kind="instruction", timing="offset", offset_value=None),  # incomplete: the validator says so
])
def test_it_says_nothing_about_a_step_whose_reminder_is_never_late(step):
    assert late_reminder_warning(step, quiet=NIGHT) is None


# --- the rule agrees with the timeline the reminders are built from ---------------------------

ZONE = ZoneInfo("UTC")  # no daylight-saving change: the rule is exact
EVERY_TEN_MINUTES = [dt.time(minute // 60, minute % 60) for minute in range(0, 24 * 60, 10)]


def _arrives_late(step: ProtocolStep, *, ended_at: dt.datetime, quiet: QuietHours) -> bool:
    [occurrence] = build_timeline(steps=[step], ended_at=ended_at, zone=ZONE, quiet=quiet)
    return occurrence.due_at > occurrence.occurs_at


@pytest.mark.parametrize("quiet", [NIGHT, SIESTA, LATE_NIGHT])
@pytest.mark.parametrize("minutes_before", [0, 45, 180])
@pytest.mark.parametrize(("value", "unit"), [(30, "minutes"), (2, "hours"), (13, "hours"), (1, "days")])
def test_the_procedure_end_window_matches_the_timeline(quiet, minutes_before, value, unit):
    step = ProtocolStep(timing="offset", offset_value=value, offset_unit=unit, remind_minutes_before=minutes_before)
    offset = value * {"minutes": 1, "hours": 60, "days": 0}[unit]
    ends = late_procedure_ends(quiet=quiet, remind_minutes_before=minutes_before, offset_minutes=offset)
    for end in EVERY_TEN_MINUTES:
        ended_at = dt.datetime.combine(dt.date(2026, 3, 10), end, tzinfo=ZONE)
        predicted = ends is not None and ends.contains(end)
        assert _arrives_late(step, ended_at=ended_at, quiet=quiet) is predicted, end


@pytest.mark.parametrize("quiet", [NIGHT, SIESTA, LATE_NIGHT])
@pytest.mark.parametrize("minutes_before", [0, 45, 180])
def test_the_step_time_window_matches_the_timeline(quiet, minutes_before):
    late = late_step_times(quiet=quiet, remind_minutes_before=minutes_before)
    ended_at = dt.datetime(2026, 3, 10, 15, 0, tzinfo=ZONE)
    for at in EVERY_TEN_MINUTES:
        step = ProtocolStep(timing="local_time", day=2, local_time=at, remind_minutes_before=minutes_before)
        predicted = late is not None and late.contains(at)
        assert _arrives_late(step, ended_at=ended_at, quiet=quiet) is predicted, at
