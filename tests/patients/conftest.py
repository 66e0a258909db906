"""Fixtures shared by the treatment page's tests: a frozen clock and a protocol's two evening steps.

Other modules here freeze their own clocks at other moments; they keep their own ``frozen``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import time_machine

NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=dt.UTC)
# Passed to ``treatable_patient``: a step on the treatment day and one the day after, so a
# recorded treatment has two reminders.
TWO_EVENING_STEPS = [{"title": "Cleanse tonight", "day": 0, "local_time": dt.time(20, 0)},
                     {"title": "Serum nightly", "kind": "home_application", "day": 1, "local_time": dt.time(20, 0)}]


@pytest.fixture
def frozen_at_now() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield
