"""Which steps' reminders the clinic's quiet hours push past the step itself.

The timeline (``patients.timeline.shift_out_of_quiet_hours``) moves a reminder
that falls due inside the quiet hours to the end of the quiet period. When that
end is after the step, the patient is reminded of something already past. The
protocol editor warns about such steps (it does not refuse them); this module
decides which, on the wall clock in minutes of the day.

With quiet hours from ``start`` until ``end`` and a reminder ``m`` minutes
before the step, the reminder arrives late exactly when the step's local time
of day lies from ``start + m`` until ``end`` (round midnight where needed): a
reminder due at ``d`` inside the quiet hours waits ``end - d`` minutes, which is
more than ``m`` only for ``d`` before ``end - m``. A reminder sent at least as
long before its step as the quiet period lasts is never late.

For a step timed by offset the step's time of day is the procedure's end plus
the offset (whole days keep the wall-clock time), so the late steps are those
of procedures ending in that window moved back by the offset. On the two days
a year the clocks change, the edges may be an hour off.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from clinic.models import Clinic
from patients.timeline import QuietHours
from protocols.models import ProtocolVersion
from protocols.steps import MINUTES_PER_DAY, MINUTES_PER_UNIT, StepInput

SHARED_PROTOCOL_NOTE = (
    " These are the default quiet hours: the protocol is shared by all clinics, and a clinic's own may differ."
)


@dataclass(frozen=True)
class ClockWindow:
    """From ``start`` until just before ``end`` on the clock; wraps midnight when ``start > end``."""

    start: dt.time
    end: dt.time

    def contains(self, moment: dt.time) -> bool:
        return (_minutes(moment) - _minutes(self.start)) % MINUTES_PER_DAY < self.length

    @property
    def length(self) -> int:
        return (_minutes(self.end) - _minutes(self.start)) % MINUTES_PER_DAY

    def moved(self, minutes: int) -> ClockWindow:
        return ClockWindow(_clock(_minutes(self.start) + minutes), _clock(_minutes(self.end) + minutes))

    def __str__(self) -> str:
        return f"{self.start:%H:%M} and {self.end:%H:%M}"


def late_step_times(*, quiet: QuietHours, remind_minutes_before: int) -> ClockWindow | None:
    """The step times of day whose reminder quiet hours push past the step, or None when there are none."""
    quiet_window = ClockWindow(quiet.start, quiet.end)
    if quiet_window.length == 0 or remind_minutes_before >= quiet_window.length:
        return None
    return ClockWindow(_clock(_minutes(quiet.start) + remind_minutes_before), quiet.end)


def late_procedure_ends(*, quiet: QuietHours, remind_minutes_before: int, offset_minutes: int) -> ClockWindow | None:
    """The procedure end times of day for which a step ``offset_minutes`` later is reminded of too late."""
    late = late_step_times(quiet=quiet, remind_minutes_before=remind_minutes_before)
    return late.moved(-offset_minutes) if late is not None else None


def late_reminder_warning(step: StepInput, *, quiet: QuietHours) -> str | None:
    """Why ``step``'s reminder may arrive after the step because of ``quiet``, or None when it cannot."""
    minutes_before = step.remind_minutes_before
    if not step.sends_reminder or minutes_before is None:
        return None
    quiet_text = f"quiet hours {quiet.start:%H:%M}–{quiet.end:%H:%M}"
    if step.timing == "local_time":
        late = late_step_times(quiet=quiet, remind_minutes_before=minutes_before)
        if step.local_time is None or late is None or not late.contains(step.local_time):
            return None
        due = _clock(_minutes(step.local_time) - minutes_before)
        return (
            f"its reminder would be due at {due:%H:%M}, inside the {quiet_text}, so it goes out at "
            f"{quiet.end:%H:%M}: after the step at {step.local_time:%H:%M}."
        )
    if step.offset_value is None or step.offset_unit not in MINUTES_PER_UNIT:
        return None
    offset = step.offset_value * MINUTES_PER_UNIT[step.offset_unit]
    ends = late_procedure_ends(quiet=quiet, remind_minutes_before=minutes_before, offset_minutes=offset)
    if ends is None:
        return None
    return (
        f"if the procedure ends between {ends} (patient's time), its reminder falls in the {quiet_text} and goes "
        f"out at {quiet.end:%H:%M}, after the step."
    )


def version_warnings(version: ProtocolVersion) -> list[str]:
    """One line per step of ``version`` whose reminder the quiet hours of its clinic can push past the step.

    A shared (default) protocol has no clinic: it is checked against the default
    quiet hours of a new clinic, and the lines say so.
    """
    clinic = version.protocol.clinic
    if clinic is not None:
        quiet, note = QuietHours(clinic.quiet_hours_start, clinic.quiet_hours_end), ""
    else:
        defaults = (Clinic._meta.get_field(name).get_default() for name in ("quiet_hours_start", "quiet_hours_end"))
        quiet, note = QuietHours(*defaults), SHARED_PROTOCOL_NOTE
    lines = []
    for step in version.steps.order_by("order", "id"):
        warning = late_reminder_warning(step.as_input(), quiet=quiet)
        if warning is not None:
            lines.append(f"Step “{step.title}”: {warning}{note}")
    return lines


def _minutes(moment: dt.time) -> int:
    return moment.hour * 60 + moment.minute


def _clock(minutes: int) -> dt.time:
    minutes %= MINUTES_PER_DAY
    return dt.time(minutes // 60, minutes % 60)
