"""The timing of a frozen version's steps, read from the database once per process.

A published or retired version never changes again (``protocols.models``
refuses every write to it and to its steps), so recording a treatment need not
read its steps each time. Only a caller that has just checked the version is
published may ask; a draft's steps can still change.

Any write to a version or a step, even of a draft, empties the cache: a
publication that is rolled back returns the version to draft, test data is
built by turning a version back to draft for a moment, and on SQLite the id of
a rolled-back version comes back for the next one (as between tests). Such
writes are rare; reading a version's steps again is one query.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from protocols.models import ProtocolStep

_TIMING_FIELDS = (
    "pk", "timing", "offset_value", "offset_unit", "day", "local_time", "repeat_count", "repeat_every_days",
    "remind_minutes_before", "sends_reminder", "avoid_until_day",
)


@dataclass(frozen=True, slots=True)
class FrozenStep:
    """What ``patients.timeline`` reads from a step; immutable, so one copy serves every treatment."""

    pk: int
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


_steps_of_version: dict[int, tuple[FrozenStep, ...]] = {}


def frozen_steps(version_id: int) -> tuple[FrozenStep, ...]:
    """The steps of a published or retired version in their order (the caller has checked it is one)."""
    steps = _steps_of_version.get(version_id)
    if steps is None:
        rows = ProtocolStep.objects.filter(version_id=version_id).order_by("order", "id").values_list(*_TIMING_FIELDS)
        steps = tuple(FrozenStep(*row) for row in rows)
        _steps_of_version[version_id] = steps
    return steps


def forget_frozen_steps(*args: Any, **kwargs: Any) -> None:
    """Empty the cache; also the receiver of ``post_save`` and ``post_delete`` of versions and steps."""
    _steps_of_version.clear()
