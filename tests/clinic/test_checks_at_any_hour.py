"""Django's system checks pass whatever the time of day they run at (CI runs `check --deploy` at any hour)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import checks


@pytest.mark.parametrize("moment", [dt.datetime(2026, 12, 1, 21, 0, 3, tzinfo=dt.UTC),
                                    dt.datetime(2026, 12, 1, 7, 59, 58, tzinfo=dt.UTC)])
def test_no_field_default_reads_as_a_mistaken_now_at_the_quiet_hours_edges(moment):
    # fields.W161 flags a fixed time default within ten seconds of the clock: the quiet hours' 21:00 and 08:00.
    with time_machine.travel(moment, tick=False):
        found = [message.id for message in checks.run_checks(tags=[checks.Tags.models])]
    assert "fields.W161" not in found
