"""A broker that is down when a transaction commits fails neither the request nor the task that committed.

The rows keep their lease and are handed out again by the dispatcher; the failure is logged.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
import time_machine

from patients import reminders
from patients.models import Reminder
from tests.factories import ReminderFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)


def broker_down(ids: list[int]) -> None:
    raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def test_the_dispatcher_keeps_its_claim_and_logs_when_the_broker_is_down(django_capture_on_commit_callbacks, caplog):
    with time_machine.travel(NOW, tick=False):
        reminder = ReminderFactory(due_at=NOW - dt.timedelta(minutes=1))
        with caplog.at_level(logging.ERROR), django_capture_on_commit_callbacks(execute=True):
            assert reminders.dispatch_due_batch(now=NOW, enqueue=broker_down) == 1
    reminder.refresh_from_db()
    assert reminder.status == Reminder.Status.QUEUED  # leased: the sweeper hands it back when the lease ends
    assert "queue_tasks" in caplog.text
    assert "Connection refused" in caplog.text
