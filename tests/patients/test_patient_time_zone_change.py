"""A patient's corrected time zone moves the reminders not yet sent to the patient's new clock."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from rest_framework.test import APIClient

from clinic.models import AuditEvent
from patients import treatments
from patients.models import Reminder
from tests.factories import treatable_patient
from tests.patients.conftest import NOW

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_at_now")]

NEW_YORK = ZoneInfo("America/New_York")
SUNSCREEN = [{"title": "Sunscreen", "day": 1, "local_time": dt.time(8, 30)}]
# 08:30 on 5 May in New York; in London it was 07:30 UTC, 03:30 in New York (inside quiet hours).
NEW_YORK_MORNING = dt.datetime(2026, 5, 5, 8, 30, tzinfo=NEW_YORK)


@pytest.fixture
def treated(clinic_a, clinician):
    patient, version, screening = treatable_patient(clinic_a, steps=SUNSCREEN, time_zone="Europe/London")
    return treatments.record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=NOW - dt.timedelta(hours=1), ended_at=NOW - dt.timedelta(minutes=30), areas="face",
    )


def sunscreen(treatment) -> Reminder:
    return Reminder.objects.get(treatment=treatment)


def test_it_moves_pending_reminders_to_the_patients_new_clock_and_logs_it(treated, clinician):
    patient = treated.patient
    patient.time_zone = "America/New_York"
    patient.save()

    result = treatments.recompute_for_new_time_zone(patient=patient, previous_zone="Europe/London", by=clinician)

    assert result == treatments.Recomputed(scheduled=1)
    reminder = sunscreen(treated)
    assert (reminder.status, reminder.occurs_at, reminder.due_at) == (
        Reminder.Status.SCHEDULED, NEW_YORK_MORNING, NEW_YORK_MORNING
    )
    event = AuditEvent.objects.get(action="treatment.recompute")
    assert event.object_id == str(treated.pk)
    assert (event.detail["previous_zone"], event.detail["time_zone"]) == ("Europe/London", "America/New_York")
    assert event.detail["reminders_moved"] == 1


def test_it_leaves_sent_reminders_alone(treated, clinician):
    Reminder.objects.filter(treatment=treated).update(status=Reminder.Status.SENT)
    before = sunscreen(treated).due_at
    patient = treated.patient
    patient.time_zone = "America/New_York"
    patient.save()
    assert treatments.recompute_for_new_time_zone(patient=patient, previous_zone="Europe/London", by=clinician) == (
        treatments.Recomputed()
    )
    assert sunscreen(treated).due_at == before
    assert not AuditEvent.objects.filter(action="treatment.recompute").exists()  # nothing of the treatment changed


def test_the_api_moves_them_when_the_zone_changes_and_not_otherwise(treated, coordinator):
    client = APIClient()
    client.force_authenticate(coordinator)
    url = f"/api/v1/patients/{treated.patient_id}/"
    before = sunscreen(treated).due_at

    assert client.patch(url, {"phone": "+44 20 7946 0000"}, format="json").status_code == 200
    assert sunscreen(treated).due_at == before
    assert not AuditEvent.objects.filter(action="treatment.recompute").exists()

    assert client.patch(url, {"time_zone": "America/New_York"}, format="json").status_code == 200
    assert sunscreen(treated).due_at == NEW_YORK_MORNING
    assert AuditEvent.objects.get(action="treatment.recompute").actor == coordinator


def test_the_admin_moves_them_and_says_so(client, treated, coordinator):
    client.force_login(coordinator)
    url = reverse("admin:patients_patient_change", args=[treated.patient_id])
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() not in (None, False)}
    consent_at = form["consent_at"].value().astimezone(ZoneInfo("Europe/London"))  # the admin's clock
    data.update(consent_at_0=f"{consent_at:%Y-%m-%d}", consent_at_1=f"{consent_at:%H:%M:%S}")
    data["time_zone"] = "America/New_York"

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert sunscreen(treated).due_at == NEW_YORK_MORNING
    assert "Time zone changed to America/New_York; 1 reminder moved to the new times." in [
        str(message) for message in get_messages(response.wsgi_request)
    ]
