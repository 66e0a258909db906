"""The admin landing page shows each of the person's clinics and nothing of others."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_it_shows_the_dashboard_with_zero_counts(client, clinician, clinic_a):
    client.force_login(clinician)
    response = client.get("/admin/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Harbour Skin Clinic" in body
    assert 'data-metric="treatments_today">0<' in body


def test_it_hides_other_clinics_from_the_dashboard(client, clinician, clinic_b):
    client.force_login(clinician)
    body = client.get("/admin/").content.decode()
    assert "Summit Dermatology" not in body


def test_it_refuses_staff_without_a_membership(client, django_user_model):
    user = django_user_model.objects.create_user("loner", password="x" * 16, is_staff=True)
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_failed_reminders_link_to_the_failed_list_and_each_role_gets_its_shortcuts(
    client, clinician, auditor, clinic_a
):
    from patients.models import Reminder
    from tests.factories import ReminderFactory

    ReminderFactory(treatment__screening__patient__clinic=clinic_a, status=Reminder.Status.FAILED,
                    last_error="550 No such user")
    client.force_login(clinician)
    body = client.get("/admin/").content.decode()
    link = f"/admin/patients/reminder/?treatment__clinic__id__exact={clinic_a.pk}&amp;status__exact=failed"
    assert f'data-metric="reminders_failed"><a href="{link}"' in body
    listed = client.get(link.replace("&amp;", "&"))
    assert listed.status_code == 200 and listed.context["cl"].result_count == 1
    assert f'<a href="{reverse("admin:outcomes_review")}">Review healing</a>' in body
    assert "Exports</a>" not in body and "Access log</a>" not in body  # a clinician may not export or audit
    client.force_login(auditor)
    body = client.get("/admin/").content.decode()
    assert "Exports</a>" in body and "Access log</a>" in body


def test_patients_with_consent_but_no_record_of_it_are_counted_and_listed(client, clinician, clinic_a, clinic_b):
    from tests.factories import PatientFactory

    unrecorded = [
        PatientFactory(clinic=clinic_a, family_name="Nodate", consent_at=None),
        PatientFactory(clinic=clinic_a, family_name="Nosource", consent_source=""),
    ]
    PatientFactory(clinic=clinic_a, family_name="Recorded")
    PatientFactory(clinic=clinic_a, family_name="Declined", reminder_consent=False, consent_at=None, consent_source="")
    PatientFactory(clinic=clinic_b, family_name="Elsewhere", consent_at=None)
    client.force_login(clinician)
    body = client.get("/admin/").content.decode()
    assert 'data-metric="consent_unrecorded"><a href="/admin/patients/patient/?consent_record=unrecorded"' in body
    assert ">2</a>" in body.split('data-metric="consent_unrecorded"')[1][:200]
    listed = client.get("/admin/patients/patient/?consent_record=unrecorded")
    assert listed.status_code == 200
    assert sorted(p.pk for p in listed.context["cl"].result_list) == sorted(p.pk for p in unrecorded)


def test_the_consent_row_is_left_out_when_every_consent_is_on_record(client, clinician, clinic_a):
    from tests.factories import PatientFactory

    PatientFactory(clinic=clinic_a)
    client.force_login(clinician)
    assert "consent_unrecorded" not in client.get("/admin/").content.decode()


def test_the_patient_page_says_the_consent_record_is_missing(client, clinician, clinic_a):
    from tests.factories import PatientFactory

    missing = PatientFactory(clinic=clinic_a, consent_source="")
    complete = PatientFactory(clinic=clinic_a)
    client.force_login(clinician)
    warning = "Consent to email reminders is ticked but not on record"
    assert warning in client.get(f"/admin/patients/patient/{missing.pk}/change/").content.decode()
    assert warning not in client.get(f"/admin/patients/patient/{complete.pk}/change/").content.decode()


def test_each_count_leads_to_the_rows_it_counts(client, clinician, clinic_a, clinic_b):
    import datetime as dt
    import html
    import re

    import time_machine

    from patients.models import Reminder
    from tests.factories import ReminderFactory, TreatmentFactory

    now = dt.datetime(2026, 5, 4, 9, 30, tzinfo=dt.UTC)
    with time_machine.travel(now, tick=False):
        for clinic in (clinic_a, clinic_b):
            today = TreatmentFactory(screening__patient__clinic=clinic, started_at=now - dt.timedelta(hours=2),
                                     ended_at=now - dt.timedelta(hours=1))
            TreatmentFactory(screening__patient__clinic=clinic, started_at=now - dt.timedelta(days=1, hours=1),
                             ended_at=now - dt.timedelta(days=1))
            ReminderFactory(treatment=today, status=Reminder.Status.SCHEDULED, due_at=now + dt.timedelta(hours=3))
            ReminderFactory(treatment=today, status=Reminder.Status.SCHEDULED, due_at=now + dt.timedelta(days=2))
        client.force_login(clinician)
        body = client.get("/admin/").content.decode()
        for metric in ("treatments_today", "reminders_due"):
            found = re.search(rf'data-metric="{metric}"><a href="([^"]+)"[^>]*>(\d+)</a>', body)
            assert found, metric
            listed = client.get(html.unescape(found.group(1)))
            assert listed.status_code == 200
            assert listed.context["cl"].result_count == int(found.group(2)) == 1, metric
