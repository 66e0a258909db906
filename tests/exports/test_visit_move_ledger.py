"""The delivery ledger says which follow-up visits staff moved by hand, from when, and why."""

from __future__ import annotations

import datetime as dt

import pytest

from patients.models import Reminder
from tests.exports.helpers import csv_rows, run_streamed

pytestmark = pytest.mark.django_db


def test_the_ledger_keeps_a_moved_visits_old_time_and_reason(auditor, clinic_a, outcome_data):
    moved = outcome_data.reminders[0]
    before = moved.occurs_at
    patient = moved.treatment.patient
    Reminder.objects.filter(pk=moved.pk).update(
        occurs_at=before + dt.timedelta(days=1), moved_at=before, moved_from=before, move_count=1,
        move_reason=f"{patient.given_name} rebooked by phone",
    )

    _export, body = run_streamed(auditor, clinic_a, kind="reminders", identified=True)
    rows = {row["reminder_id"]: row for row in csv_rows(body)}
    row = rows[str(moved.pk)]
    assert (row["move_count"], row["visit_before_move_at"]) == ("1", before.isoformat())
    assert row["move_reason"] == f"{patient.given_name} rebooked by phone"
    assert {other["move_count"] for key, other in rows.items() if key != str(moved.pk)} == {"0"}

    _export, body = run_streamed(auditor, clinic_a, kind="reminders")
    [row] = [row for row in csv_rows(body) if row["move_count"] == "1"]
    assert row["move_reason"] == "[name removed] rebooked by phone"
