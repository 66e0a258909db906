"""Two submissions at once: the second waits for the first, then is refused (PostgreSQL; SQLite writes one at a time).

A double click sends the adverse-event form twice within milliseconds, and two
tabs can save one entry at the same moment. The first holds the treatment's (or
the entry's) row until it commits; these tests keep the first transaction open
while the second runs in another thread and connection.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from patients.models import AdverseEvent, OutcomeAssessment
from patients.outcomes import (
    AdverseEventAlreadyRecorded,
    ChangedSinceOpened,
    correct_assessment,
    current_revision,
    record_adverse_event,
    record_assessment,
)
from tests.factories import TreatmentFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are what is tested; SQLite has none"),
]


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def treatment(clinic_a):
    ended = timezone.now() - dt.timedelta(days=10)
    return TreatmentFactory(screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1), ended_at=ended)


def _in_another_connection(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as error:  # noqa: BLE001 - the test looks at which error it was
            outcome["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _while_the_first_is_uncommitted(first: Callable[[], Any], second: Callable[[], Any]) -> dict[str, Any]:
    """Run ``first`` in a transaction, start ``second`` before it commits, and return what ``second`` did."""
    with transaction.atomic():
        first()
        thread, outcome = _in_another_connection(second)
        thread.join(timeout=1)  # without the lock it would finish here, having seen nothing of the first
    thread.join(timeout=10)
    return outcome


def test_a_double_click_on_an_adverse_event_stores_one(treatment, clinician):
    def submit() -> AdverseEvent:
        return record_adverse_event(
            treatment=treatment, by=clinician, kind="infection", severity="severe",
            onset_date=timezone.localdate() - dt.timedelta(days=1),
        )

    second = _while_the_first_is_uncommitted(submit, submit)

    assert isinstance(second.get("error"), AdverseEventAlreadyRecorded), second
    assert AdverseEvent.objects.filter(treatment=treatment).count() == 1


def test_two_tabs_saving_one_entry_at_once_save_one(treatment, clinician):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 2, "pain": 3})
    opened = current_revision(entry)

    def correct(changes: dict[str, int], reason: str) -> Callable[[], OutcomeAssessment]:
        return lambda: correct_assessment(
            assessment=OutcomeAssessment.objects.get(pk=entry.pk), by=clinician, changes=changes, reason=reason,
            based_on=opened,
        )

    second = _while_the_first_is_uncommitted(correct({"erythema": 4}, "Photo shows severe"), correct({"pain": 6}, "Pain was 6"))

    assert isinstance(second.get("error"), ChangedSinceOpened), second
    entry.refresh_from_db()
    assert (entry.erythema, entry.pain) == (4, 3)
