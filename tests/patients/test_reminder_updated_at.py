"""A reminder's updated_at moves with every change of the row, so an integrator syncing by it misses none.

The outbox is changed with conditional UPDATEs (no save(), so no auto_now): each names updated_at itself.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from patients import reminders
from patients.treatments import record_step_done
from tests.factories import ReminderFactory

pytestmark = pytest.mark.django_db
CREATED = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)


def test_claiming_sending_and_the_patients_tap_each_move_updated_at(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with time_machine.travel(CREATED, tick=False):
        reminder = ReminderFactory(due_at=CREATED - dt.timedelta(minutes=1))
    claimed_at = CREATED + dt.timedelta(minutes=1)
    with time_machine.travel(claimed_at, tick=False):
        assert reminders.claim_due(now=claimed_at, limit=1) == [reminder.pk]
    reminder.refresh_from_db()
    assert reminder.updated_at == claimed_at

    sent_at = CREATED + dt.timedelta(minutes=2)
    with time_machine.travel(sent_at, tick=False):
        assert reminders.send_reminder(reminder_id=reminder.pk, now=sent_at) == reminders.SendOutcome.SENT
    reminder.refresh_from_db()
    assert (reminder.status, reminder.updated_at) == ("sent", sent_at)

    tapped_at = CREATED + dt.timedelta(hours=3)
    with time_machine.travel(tapped_at, tick=False):
        assert record_step_done(reminder=reminder)
    reminder.refresh_from_db()
    assert reminder.updated_at == tapped_at


def test_a_swept_lease_moves_updated_at():
    with time_machine.travel(CREATED, tick=False):
        reminder = ReminderFactory(due_at=CREATED - dt.timedelta(minutes=1))
        reminders.claim_due(now=CREATED, limit=1)
    later = CREATED + dt.timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        assert reminders.sweep_expired_leases(now=later) == 1
    reminder.refresh_from_db()
    assert (reminder.status, reminder.updated_at) == ("scheduled", later)
