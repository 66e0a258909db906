"""The treatment's timeline marks a reminder the quiet hours push past its step, so staff can call the patient."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from patients.models import Reminder
from patients.treatments import record_treatment, resend_reminder, timeline_for
from tests.factories import treatable_patient
from tests.patients.conftest import NOW

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_at_now")]
MARK = "arrives after the step (quiet hours)"
# Europe/London is on summer time: the procedure ends at 10:00 on the patient's clock.
STEPS = [{"title": "Cool compress", "day": 1, "local_time": dt.time(7, 0)},  # reminder held until 08:00
         {"title": "Serum tonight", "day": 0, "local_time": dt.time(20, 0)}]


@pytest.fixture
def treatment(clinic_a, clinician):
    patient, version, screening = treatable_patient(clinic_a, steps=STEPS)
    return record_treatment(patient=patient, protocol_version=version, screening=screening, clinician=clinician,
                            started_at=NOW - dt.timedelta(hours=1), ended_at=NOW - dt.timedelta(minutes=30),
                            areas="full face")


def _late_titles(treatment) -> list[str]:
    return [entry.step.title for entry in timeline_for(treatment=treatment) if entry.arrives_after_step]


def test_it_marks_only_the_reminder_due_after_its_step(treatment):
    assert _late_titles(treatment) == ["Cool compress"]


def test_the_page_shows_the_mark_in_the_late_reminders_row(client, coordinator, treatment):
    client.force_login(coordinator)
    body = client.get(reverse("admin:patients_treatment_change", args=[treatment.pk])).content.decode()
    assert body.count(MARK) == 1
    row = body[body.index("Cool compress"):]
    assert row.index(MARK) < row.index("</tr>")


def test_a_reminder_resent_after_its_step_is_not_blamed_on_quiet_hours(treatment, clinic_admin):
    serum = treatment.reminders.get(step__title="Serum tonight")
    Reminder.objects.filter(pk=serum.pk).update(status=Reminder.Status.SENT, sent_at=NOW)
    resent = resend_reminder(reminder=serum, by=clinic_admin, now=serum.occurs_at + dt.timedelta(hours=1))
    assert resent.due_at > resent.occurs_at
    assert _late_titles(treatment) == ["Cool compress"]
