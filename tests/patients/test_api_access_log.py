"""API reads of clinical records are in the access log, under the action the admin's page for them writes.

One record read writes one entry about it; a list writes one entry about the
record the rows belong to (the patient, the treatment), naming every row.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.db.models import Max
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from clinic.audit import verify_chain
from clinic.models import AuditEvent
from patients.models import AdverseEvent, Reminder, Treatment
from patients.outcomes import record_adverse_event, record_assessment
from patients.treatments import record_treatment
from tests.factories import IntakeFactory, ScreeningFactory, treatable_patient

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=dt.UTC)
REQUEST_ID = "req-api-read-0001"
STEPS = [{"title": "Cleanse tonight", "day": 0, "local_time": dt.time(20, 0)},
         {"title": "Check-in", "kind": "follow_up_visit", "day": 7, "local_time": dt.time(15, 0)}]


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def treatment(clinic_a, clinician) -> Treatment:
    """A treatment of two days ago with its reminders, two outcome entries and an adverse event."""
    ended = NOW - dt.timedelta(days=2)
    with time_machine.travel(ended - dt.timedelta(hours=2), tick=False):  # screened a day before the procedure
        patient, version, screening = treatable_patient(clinic_a, steps=STEPS)
    treatment = record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=ended - dt.timedelta(minutes=45), ended_at=ended, areas="full face",
    )
    record_assessment(treatment=treatment, by=clinician, time_point_day=0, scores={"erythema": 3})
    record_assessment(treatment=treatment, by=clinician, time_point_day=1, scores={"erythema": 2})
    record_adverse_event(treatment=treatment, by=clinician, kind="milia", severity="mild", onset_date=ended.date())
    return treatment


def read(user, url: str) -> tuple[dict | list, list[AuditEvent]]:
    """GET ``url`` as ``user``: the body, and the access-log entries that one request wrote."""
    last = AuditEvent.objects.aggregate(last=Max("id"))["last"] or 0
    api = APIClient()
    api.force_authenticate(user)
    response = api.get(url, HTTP_X_REQUEST_ID=REQUEST_ID)
    assert response.status_code == 200, response.content
    return response.json(), list(AuditEvent.objects.filter(id__gt=last).order_by("id"))


def named(type_label: str, ids: list[int]) -> list[dict[str, str]]:
    return [{"type": type_label, "id": str(pk)} for pk in ids]


def assert_one_entry(entries, *, action, actor, clinic, obj, detail) -> None:  # noqa: ANN001
    assert len(entries) == 1, [(e.action, e.object_type, e.object_id) for e in entries]
    entry = entries[0]
    assert (entry.action, entry.actor, entry.actor_label, entry.clinic) == (action, actor, actor.username, clinic)
    assert (entry.object_type, entry.object_id) == (obj._meta.label_lower, str(obj.pk))
    assert entry.detail == detail
    assert entry.request_id == REQUEST_ID


# --- lists: one entry, every row named ---------------------------------------------------------


def test_reading_a_patients_intakes_logs_one_entry_naming_each_intake(auditor, clinic_a, treatment):
    patient = treatment.patient
    IntakeFactory(patient=patient)
    IntakeFactory(patient=patient)

    body, entries = read(auditor, f"/api/v1/patients/{patient.pk}/intakes/")

    assert len(body) == 2
    assert_one_entry(entries, action="intake.view", actor=auditor, clinic=clinic_a, obj=patient,
                     detail={"objects": named("patients.intake", [intake["id"] for intake in body])})
    assert verify_chain().intact


def test_reading_a_patients_screenings_logs_one_entry_naming_each_screening(auditor, clinic_a, treatment):
    patient = treatment.patient
    ScreeningFactory(patient=patient, protocol_version=treatment.protocol_version)

    body, entries = read(auditor, f"/api/v1/patients/{patient.pk}/screenings/")

    assert len(body) == 2
    assert_one_entry(entries, action="screening.view", actor=auditor, clinic=clinic_a, obj=patient,
                     detail={"objects": named("patients.screening", [screening["id"] for screening in body])})


def test_reading_a_timeline_logs_one_entry_on_the_treatment_naming_its_reminders(auditor, clinic_a, treatment):
    body, entries = read(auditor, f"/api/v1/treatments/{treatment.pk}/timeline/")

    reminder_ids = [entry["reminder"]["id"] for entry in body if entry["reminder"]]
    assert sorted(reminder_ids) == sorted(Reminder.objects.filter(treatment=treatment).values_list("pk", flat=True))
    assert len(reminder_ids) == 2
    assert_one_entry(entries, action="view", actor=auditor, clinic=clinic_a, obj=treatment,
                     detail={"page": "timeline", "objects": named("patients.reminder", reminder_ids)})


def test_reading_a_treatments_outcomes_logs_one_entry_naming_each_outcome_and_event(auditor, clinic_a, treatment):
    body, entries = read(auditor, f"/api/v1/treatments/{treatment.pk}/outcomes/")

    assert (len(body["assessments"]), len(body["adverse_events"])) == (2, 1)
    rows = [*named("patients.outcomeassessment", [a["id"] for a in body["assessments"]]),
            *named("patients.adverseevent", [e["id"] for e in body["adverse_events"]])]
    assert_one_entry(entries, action="view", actor=auditor, clinic=clinic_a, obj=treatment,
                     detail={"page": "outcomes", "objects": rows})


def test_an_empty_list_is_still_a_look_and_is_logged(auditor, clinic_a, treatment):
    patient = treatment.patient
    patient.intakes.all().delete()

    body, entries = read(auditor, f"/api/v1/patients/{patient.pk}/intakes/")

    assert body == []
    assert_one_entry(entries, action="intake.view", actor=auditor, clinic=clinic_a, obj=patient, detail={})


# --- one record: "view", as the admin's change page writes --------------------------------------


def test_reading_a_treatment_logs_a_view_of_it(auditor, clinic_a, treatment):
    body, entries = read(auditor, f"/api/v1/treatments/{treatment.pk}/")

    assert body["id"] == treatment.pk
    assert_one_entry(entries, action="view", actor=auditor, clinic=clinic_a, obj=treatment, detail={})


def test_reading_an_outcome_entry_logs_a_view_of_it(auditor, clinic_a, treatment):
    assessment = treatment.outcomes.get(time_point_day=1)

    _body, entries = read(auditor, f"/api/v1/outcomes/{assessment.pk}/")

    assert_one_entry(entries, action="view", actor=auditor, clinic=clinic_a, obj=assessment, detail={})


def test_reading_an_adverse_event_logs_a_view_of_it(auditor, clinic_a, treatment):
    event = AdverseEvent.objects.get(treatment=treatment)

    _body, entries = read(auditor, f"/api/v1/adverse-events/{event.pk}/")

    assert_one_entry(entries, action="view", actor=auditor, clinic=clinic_a, obj=event, detail={})


def test_reading_a_reminder_logs_a_view_of_it(auditor, clinic_a, treatment):
    reminder = Reminder.objects.filter(treatment=treatment).first()

    _body, entries = read(auditor, f"/api/v1/reminders/{reminder.pk}/")

    assert_one_entry(entries, action="view", actor=auditor, clinic=clinic_a, obj=reminder, detail={})


# --- what is not a look ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/api/v1/patients/{patient}/intakes/", "/api/v1/patients/{patient}/screenings/", "/api/v1/treatments/{treatment}/",
    "/api/v1/treatments/{treatment}/timeline/", "/api/v1/treatments/{treatment}/outcomes/",
])
def test_another_clinic_gets_404_and_nothing_is_logged(clinician_b, treatment, path):
    api = APIClient()
    api.force_authenticate(clinician_b)
    before = AuditEvent.objects.count()

    response = api.get(path.format(patient=treatment.patient_id, treatment=treatment.pk))

    assert response.status_code == 404
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize("path", [
    "/api/v1/patients/{patient}/intakes/", "/api/v1/patients/{patient}/screenings/",
    "/api/v1/treatments/{treatment}/outcomes/",
])
def test_a_logged_list_runs_as_many_queries_with_more_rows(auditor, clinician, treatment, path):
    url = path.format(patient=treatment.patient_id, treatment=treatment.pk)
    api = APIClient()
    api.force_authenticate(auditor)
    api.get(url)  # first-request caches (content types, memberships) are not the list's
    with CaptureQueriesContext(connection) as few:
        api.get(url)
    for day in (2, 3):  # the time points that have come, two days after the procedure
        IntakeFactory(patient=treatment.patient)
        ScreeningFactory(patient=treatment.patient, protocol_version=treatment.protocol_version)
        record_assessment(treatment=treatment, by=clinician, time_point_day=day, scores={"erythema": 1})
    with CaptureQueriesContext(connection) as more:
        api.get(url)
    assert len(more.captured_queries) == len(few.captured_queries)
