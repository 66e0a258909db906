"""A clinic's corrected time zone or quiet hours move the reminders not yet sent that they time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from clinic.models import AuditEvent
from patients import treatments
from patients.models import Reminder
from tests.admin_forms import change_form_data
from tests.factories import treatable_patient
from tests.patients.conftest import NOW

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_at_now")]

BERLIN = ZoneInfo("Europe/Berlin")
MORNING = [{"title": "Sunscreen", "day": 1, "local_time": dt.time(8, 30)}]


def treat(clinic, clinician, **patient_kwargs):
    patient, version, screening = treatable_patient(clinic, steps=MORNING, **patient_kwargs)
    return treatments.record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=NOW - dt.timedelta(hours=1), ended_at=NOW - dt.timedelta(minutes=30), areas="face",
    )


def reminder(treatment) -> Reminder:
    return Reminder.objects.get(treatment=treatment)


def change_clinic(clinic, **values):
    for name, value in values.items():
        setattr(clinic, name, value)
    clinic.save()
    return list(values)


def test_a_corrected_clinic_zone_moves_the_reminders_of_patients_on_the_clinics_clock(clinic_a, clinician):
    on_clinic_clock = treat(clinic_a, clinician, time_zone="")
    own_zone = treat(clinic_a, clinician, time_zone="Europe/London")
    own_before = reminder(own_zone).due_at

    changed = change_clinic(clinic_a, time_zone="Europe/Berlin")  # set up as London by mistake
    result = treatments.recompute_for_clinic_time(clinic=clinic_a, changed=changed, by=clinician)

    assert result == treatments.ClinicRecomputed(treatments=1, reminders=treatments.Recomputed(scheduled=1))
    assert reminder(on_clinic_clock).due_at == dt.datetime(2026, 5, 5, 8, 30, tzinfo=BERLIN)
    assert reminder(own_zone).due_at == own_before  # the patient's own clock did not change
    event = AuditEvent.objects.get(action="treatment.recompute")
    assert (event.object_id, event.detail["clinic_changed"], event.detail["reminders_moved"]) == (
        str(on_clinic_clock.pk), ["time_zone"], 1
    )


def test_later_quiet_hours_move_every_patients_reminder_that_falls_in_them(clinic_a, clinician):
    treated = treat(clinic_a, clinician, time_zone="Europe/Berlin")
    assert reminder(treated).due_at == dt.datetime(2026, 5, 5, 8, 30, tzinfo=BERLIN)

    changed = change_clinic(clinic_a, quiet_hours_end=dt.time(9, 0))
    result = treatments.recompute_for_clinic_time(clinic=clinic_a, changed=changed, by=clinician)

    assert result.treatments == 1
    row = reminder(treated)
    assert (row.occurs_at, row.due_at) == (
        dt.datetime(2026, 5, 5, 8, 30, tzinfo=BERLIN), dt.datetime(2026, 5, 5, 9, 0, tzinfo=BERLIN)
    )


def test_other_changes_and_sent_reminders_are_left_alone(clinic_a, clinician):
    treated = treat(clinic_a, clinician, time_zone="")
    assert treatments.recompute_for_clinic_time(
        clinic=clinic_a, changed=change_clinic(clinic_a, sender_name="Harbour"), by=clinician
    ) == treatments.ClinicRecomputed()
    Reminder.objects.filter(treatment=treated).update(status=Reminder.Status.SENT)
    before = reminder(treated).due_at
    result = treatments.recompute_for_clinic_time(
        clinic=clinic_a, changed=change_clinic(clinic_a, time_zone="Europe/Berlin"), by=clinician
    )
    assert result == treatments.ClinicRecomputed()
    assert reminder(treated).due_at == before
    assert not AuditEvent.objects.filter(action="treatment.recompute").exists()


def test_the_clinic_admin_moves_them_and_says_so(client, clinic_a, clinician, clinic_admin):
    treated = treat(clinic_a, clinician, time_zone="")
    client.force_login(clinic_admin)
    url = reverse("admin:clinic_clinic_change", args=[clinic_a.pk])
    data = change_form_data(client.get(url))
    data["time_zone"] = "Europe/Berlin"

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert reminder(treated).due_at == dt.datetime(2026, 5, 5, 8, 30, tzinfo=BERLIN)
    assert ("Reminders not yet sent of 1 treatment follow the new settings: 1 reminder moved to the new "
            "times.") in [str(message) for message in get_messages(response.wsgi_request)]
