"""The reminder delivery ledger: every reminder with its step, due time, status, attempts, sent time and error,
and the delivery a resend replaced."""

from __future__ import annotations

import pytest

from patients.exports import ExportRequest, ExportRequestError, start_export
from patients.models import Reminder
from patients.treatments import resend_reminder
from tests.exports.helpers import csv_rows, run_streamed

pytestmark = pytest.mark.django_db


def _text(value: object) -> str:
    return "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)


def test_it_lists_every_reminder_of_the_clinic_as_stored(auditor, clinic_a, outcome_data):
    export, body = run_streamed(auditor, clinic_a, kind="reminders", identified=True)

    rows = {row["reminder_id"]: row for row in csv_rows(body)}
    assert len(rows) == len(outcome_data.reminders) == export.row_count
    for reminder in outcome_data.reminders:
        row = rows[str(reminder.pk)]
        assert row["step"] == reminder.step.title
        assert row["step_order"] == str(reminder.step.order)
        assert row["occurrence"] == str(reminder.occurrence)
        assert row["due_at"] == _text(reminder.due_at)
        assert row["occurs_at"] == _text(reminder.occurs_at)
        assert row["status"] == reminder.status
        assert row["attempts"] == str(reminder.attempts)
        assert row["sent_at"] == _text(reminder.sent_at)
        assert row["last_error"] == reminder.last_error
        assert row["patient_email"] == reminder.treatment.patient.email
    assert export.manifest["filters"]["date_field"] == "reminder due date"


def test_it_filters_the_ledger_by_due_date(auditor, clinic_a, outcome_data):
    first = outcome_data.reminders[0]
    due_day = first.due_at.date()

    _export, body = run_streamed(auditor, clinic_a, kind="reminders", identified=True, date_from=due_day, date_to=due_day)

    assert [row["reminder_id"] for row in csv_rows(body)] == [str(first.pk)]


def test_it_offers_the_ledger_as_csv_or_xlsx_only(auditor, clinic_a):
    with pytest.raises(ExportRequestError) as refused:
        start_export(user=auditor, request=ExportRequest(clinic=clinic_a, kind="reminders", format="fhir"))
    assert "format" in refused.value.errors


def test_it_keeps_the_delivery_a_resend_replaced(auditor, coordinator, clinic_a, outcome_data):
    sent = next(reminder for reminder in outcome_data.reminders if reminder.status == Reminder.Status.SENT)
    sent_at = sent.sent_at
    resend_reminder(reminder=sent, by=coordinator)

    _export, body = run_streamed(auditor, clinic_a, kind="reminders", identified=True)

    row = next(row for row in csv_rows(body) if row["reminder_id"] == str(sent.pk))
    assert (row["status"], row["sent_at"], row["attempts"]) == ("scheduled", "", "0")
    assert (row["resend_count"], row["previous_status"], row["previous_attempts"]) == ("1", "sent", "1")
    assert row["previous_sent_at"] == _text(sent_at)


def test_a_de_identified_ledger_scrubs_the_recipient_from_the_answer_before_a_resend(auditor, clinic_a, outcome_data):
    failed = next(reminder for reminder in outcome_data.reminders if reminder.status == Reminder.Status.FAILED)
    Reminder.objects.filter(pk=failed.pk).update(
        status=Reminder.Status.SCHEDULED, last_error="", resend_count=1, previous_status="failed",
        previous_error=failed.last_error,
    )

    _export, body = run_streamed(auditor, clinic_a, kind="reminders")

    [row] = [row for row in csv_rows(body) if row["resend_count"] == "1"]
    assert row["previous_error"] == "550 5.1.1 <[email removed]>: mailbox of [name removed] unavailable"
