"""The treatment and reminder endpoints: record through the service, timeline, resend/cancel, scoping."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from rest_framework.test import APIClient

from patients.models import Reminder, Treatment
from tests.factories import LotFactory, ProductFactory, ScreeningFactory, treatable_patient

pytestmark = pytest.mark.django_db

UTC = dt.UTC
NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
Status = Reminder.Status
STEPS = [{"title": "Cleanse tonight", "day": 0, "local_time": dt.time(20, 0)},
         {"title": "Check-in", "kind": "follow_up_visit", "day": 7, "local_time": dt.time(15, 0)}]


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def plan(clinic_a):
    return treatable_patient(clinic_a, steps=STEPS, time_zone="Europe/Berlin")


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def payload(plan, **overrides):
    patient, version, screening = plan
    return {
        "patient": patient.pk, "protocol_version": version.pk, "screening": screening.pk,
        "started_at": "2026-05-04T08:15:00Z", "ended_at": "2026-05-04T09:00:00Z", "areas": "full face",
        **overrides,
    }


def recorded(plan, clinician) -> Treatment:
    response = api_for(clinician).post("/api/v1/treatments/", payload(plan), format="json")
    assert response.status_code == 201, response.json()
    return Treatment.objects.get(pk=response.json()["id"])


def test_it_records_a_treatment_with_an_application_and_returns_its_timeline(plan, clinician, clinic_a):
    lot = LotFactory(product=ProductFactory(clinic=clinic_a))
    api = api_for(clinician)
    response = api.post(
        "/api/v1/treatments/",
        payload(plan, applications=[{"lot": lot.pk, "volume_ml": "2.00", "minutes_after_procedure": 5}]),
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["applications"][0]["lot_number"] == lot.lot_number
    timeline = api.get(f"/api/v1/treatments/{body['id']}/timeline/").json()
    assert [(entry["step_title"], entry["state"]) for entry in timeline] == [
        ("Cleanse tonight", "upcoming"), ("Check-in", "upcoming"),
    ]
    assert timeline[0]["occurs_at"] == "2026-05-04T18:00:00Z"  # 20:00 in Berlin
    assert timeline[0]["reminder"]["status"] == "scheduled"


def test_it_answers_bad_input_with_field_errors_and_records_nothing(plan, clinician, clinic_a):
    patient, version, _ = plan
    blocked = ScreeningFactory(patient=patient, protocol_version=version, outcome="blocked")
    recalled = LotFactory(product=ProductFactory(clinic=clinic_a), recalled=True, recall_reason="cold chain",
                          recalled_at=dt.datetime(2026, 5, 1, tzinfo=dt.UTC))  # before the procedure
    response = api_for(clinician).post(
        "/api/v1/treatments/",
        payload(plan, screening=blocked.pk, applications=[{"lot": recalled.pk, "volume_ml": "1.00"}]),
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()
    assert "blocks this procedure" in errors["screening"][0]
    assert "recalled" in errors["applications"][0]
    assert not Treatment.objects.exists()
    assert api_for(clinician).post("/api/v1/treatments/", {"areas": ""}, format="json").status_code == 400



@pytest.mark.parametrize("started", ["2026-05-04T10:15:00", "2026-05-04T10:15", "2026-05-04 10:15:00"])
def test_it_refuses_a_procedure_time_without_its_offset_and_records_nothing(plan, clinician, started):
    # "10:15" meant on the Berlin clinic's clock would be stored as 10:15 UTC, two hours late, with every reminder.
    response = api_for(clinician).post("/api/v1/treatments/", payload(plan, started_at=started), format="json")

    assert response.status_code == 400
    assert response.json() == {"started_at": [
        "Give the date and time with its offset from UTC, e.g. 2026-05-07T10:00:00+01:00 or 2026-05-07T09:00:00Z: "
        "without one it would be read as UTC."
    ]}
    assert not Treatment.objects.exists()


@pytest.mark.parametrize(
    ("device_settings", "field"),
    [({"needle_depth_mm": "-1.00"}, "needle_depth_mm"), ({"needle_depth_mm": "0"}, "needle_depth_mm"),
     ({"needle_depth_mm": "9.50"}, "needle_depth_mm"), ({"passes": 0}, "passes")],
)
def test_it_answers_400_to_impossible_device_settings_and_records_nothing(plan, clinician, device_settings, field):
    response = api_for(clinician).post("/api/v1/treatments/", payload(plan, **device_settings), format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not Treatment.objects.exists()


def test_it_answers_400_to_a_screening_run_after_the_procedure_started_and_records_nothing(plan, clinician):
    patient, version, _ = plan
    # 08:30 UTC, after the procedure's start at 08:15 UTC (09:30 and 09:15 at the London clinic).
    late = ScreeningFactory(patient=patient, protocol_version=version, run_at=NOW - dt.timedelta(hours=1))
    response = api_for(clinician).post("/api/v1/treatments/", payload(plan, screening=late.pk), format="json")
    assert response.status_code == 400
    assert response.json() == {"screening": [
        "The screening was run at 09:30, after the procedure started (09:15); a screening must precede treatment. "
        "Clinic time (Europe/London)."
    ]}
    assert not Treatment.objects.exists()
    assert not Reminder.objects.exists()


def test_it_answers_400_to_moving_the_procedure_before_its_screening(plan, clinician):
    treatment = recorded(plan, clinician)  # screened at 09:30 UTC the day before
    response = api_for(clinician).post(f"/api/v1/treatments/{treatment.pk}/reschedule/",
                                       {"started_at": "2026-05-03T08:15:00Z", "ended_at": "2026-05-03T09:00:00Z"},
                                       format="json")
    assert response.status_code == 400
    assert "a screening must precede treatment" in response.json()["started_at"][0]
    treatment.refresh_from_db()
    assert treatment.started_at == dt.datetime(2026, 5, 4, 8, 15, tzinfo=UTC)

def test_it_answers_400_to_a_screening_planned_for_another_day_and_records_nothing(plan, clinician):
    patient, version, _ = plan
    later = ScreeningFactory(patient=patient, protocol_version=version, planned_for=dt.date(2026, 6, 3))
    response = api_for(clinician).post("/api/v1/treatments/", payload(plan, screening=later.pk), format="json")
    assert response.status_code == 400
    assert response.json() == {"screening": [
        "The screening was run for a procedure on 2026-06-03, but this procedure started on 2026-05-04 "
        "(clinic time, Europe/London); screen the patient again for 2026-05-04."
    ]}
    assert not Treatment.objects.exists()


def test_it_answers_400_to_moving_the_procedure_to_another_day_than_its_screening(plan, clinician):
    patient, version, _ = plan
    early = ScreeningFactory(patient=patient, protocol_version=version, run_at=NOW - dt.timedelta(days=3))
    treatment = recorded((patient, version, early), clinician)
    response = api_for(clinician).post(f"/api/v1/treatments/{treatment.pk}/reschedule/",
                                       {"started_at": "2026-05-03T08:15:00Z", "ended_at": "2026-05-03T09:00:00Z"},
                                       format="json")
    assert response.status_code == 400
    assert response.json() == {"started_at": [
        "The screening was run for a procedure on 2026-05-04, but this procedure started on 2026-05-03 "
        "(clinic time, Europe/London); screen the patient again for 2026-05-03."
    ]}
    treatment.refresh_from_db()
    assert treatment.started_at == dt.datetime(2026, 5, 4, 8, 15, tzinfo=UTC)


def test_it_lets_only_clinicians_record(plan, coordinator):
    assert api_for(coordinator).post("/api/v1/treatments/", payload(plan), format="json").status_code == 403
    assert not Treatment.objects.exists()


def test_it_keeps_other_clinics_out(plan, clinician, clinician_b):
    treatment = recorded(plan, clinician)
    reminder = Reminder.objects.filter(treatment=treatment).first()
    other = api_for(clinician_b)
    response = other.post("/api/v1/treatments/", payload(plan), format="json")
    assert response.status_code == 400
    assert "patient" in response.json()
    assert other.get(f"/api/v1/treatments/{treatment.pk}/").status_code == 404
    assert other.get(f"/api/v1/treatments/{treatment.pk}/timeline/").status_code == 404
    assert other.get("/api/v1/treatments/").json()["results"] == []
    assert other.get("/api/v1/reminders/").json()["results"] == []
    assert other.post(f"/api/v1/reminders/{reminder.pk}/cancel/").status_code == 404
    assert other.post(f"/api/v1/treatments/{treatment.pk}/cancel/", {"reason": "x"}, format="json").status_code == 404
    reminder.refresh_from_db()
    assert reminder.status == Status.SCHEDULED


def test_it_lists_reminders_with_filters_and_resends_or_cancels_one(plan, clinician, coordinator, auditor):
    treatment = recorded(plan, clinician)
    first, second = Reminder.objects.filter(treatment=treatment).order_by("due_at")
    Reminder.objects.filter(pk=first.pk).update(
        status=Status.FAILED, attempts=1, last_attempt_at=NOW, last_error="550 no such user"
    )
    api = api_for(coordinator)
    failed = api.get("/api/v1/reminders/", {"status": "failed", "patient": treatment.patient_id}).json()["results"]
    assert [(r["id"], r["last_error"]) for r in failed] == [(first.pk, "550 no such user")]
    assert api_for(auditor).post(f"/api/v1/reminders/{first.pk}/resend/").status_code == 403
    # The server refused the address: the same address again would be refused again.
    refused = api.post(f"/api/v1/reminders/{first.pk}/resend/")
    assert refused.status_code == 400
    assert "correct the patient's email first" in refused.json()["reminder"][0]
    patient = treatment.patient
    patient.email = "corrected@example.org"
    with time_machine.travel(NOW + dt.timedelta(minutes=5), tick=False):
        patient.save()
    resent = api.post(f"/api/v1/reminders/{first.pk}/resend/")
    assert resent.status_code == 200
    assert (resent.json()["status"], resent.json()["resend_count"]) == ("scheduled", 1)
    assert (resent.json()["previous_status"], resent.json()["previous_error"]) == ("failed", "550 no such user")
    assert api.post(f"/api/v1/reminders/{second.pk}/cancel/").json()["status"] == "cancelled"
    again = api.post(f"/api/v1/reminders/{second.pk}/cancel/")
    assert again.status_code == 400
    assert "reminder" in again.json()


def test_it_reschedules_and_cancels_a_treatment(plan, clinician):
    patient, version, _ = plan
    # Screened three days before, so the procedure may be moved two hours earlier.
    early = ScreeningFactory(patient=patient, protocol_version=version, run_at=NOW - dt.timedelta(days=3))
    treatment = recorded((patient, version, early), clinician)
    api = api_for(clinician)
    moved = api.post(f"/api/v1/treatments/{treatment.pk}/reschedule/",
                     {"started_at": "2026-05-04T06:15:00Z", "ended_at": "2026-05-04T07:00:00Z"}, format="json")
    assert moved.status_code == 200
    treatment.refresh_from_db()
    assert treatment.ended_at == dt.datetime(2026, 5, 4, 7, 0, tzinfo=UTC)
    assert api.post(f"/api/v1/treatments/{treatment.pk}/cancel/", {"reason": ""}, format="json").status_code == 400
    cancelled = api.post(f"/api/v1/treatments/{treatment.pk}/cancel/", {"reason": "Entered twice"}, format="json")
    assert cancelled.json()["status"] == "cancelled"
    assert Reminder.objects.get(treatment=treatment, step__title="Check-in").status == Status.CANCELLED


def test_it_says_when_a_lot_applied_in_the_treatment_was_recalled(plan, clinician, clinic_a):
    lot = LotFactory(product=ProductFactory(clinic=clinic_a))
    api = api_for(clinician)
    created = api.post(
        "/api/v1/treatments/", payload(plan, applications=[{"lot": lot.pk, "volume_ml": "1.00"}]), format="json"
    ).json()
    assert created["applications"][0]["lot_recalled_at"] is None

    lot.recalled, lot.recall_reason = True, "Sterility failure"
    lot.save()

    body = api.get(f"/api/v1/treatments/{created['id']}/").json()
    assert body["applications"][0]["lot_recalled_at"] == "2026-05-04T09:30:00Z"
