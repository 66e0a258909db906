"""A page of an API list of patient data is in the access log: one "list" entry per clinic whose rows it shows.

Each entry names who, the kind of record (its object type), the clinic, the
filters of the request (its query less the page number), the page, and the
rows of that clinic on the page.  An empty page is a search all the same and
is logged against the clinics searched.  A request that is refused or has a
bad filter or page shows no row and logs nothing.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db.models import Max
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

import clinic.urls  # noqa: F401 - the URL modules register every viewset on the router
from clinic.api.router import router
from clinic.audit import verify_chain
from clinic.models import AuditEvent, Role
from patients.models import AdverseEvent, Export, OutcomeAssessment, Patient, Reminder, Screening, Treatment
from patients.outcomes import record_adverse_event, record_assessment
from patients.treatments import record_treatment
from tests.factories import MembershipFactory, UserFactory, staff, treatable_patient

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=dt.UTC)
REQUEST_ID = "req-api-list-0001"
STEPS = [{"title": "Cleanse tonight", "day": 0, "local_time": dt.time(20, 0)},
         {"title": "Check-in", "kind": "follow_up_visit", "day": 7, "local_time": dt.time(15, 0)}]


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with time_machine.travel(NOW, tick=False):
        yield


def treated(clinic, clinician) -> Treatment:
    """A treatment of two days ago with its reminders, two outcome entries and an adverse event."""
    ended = NOW - dt.timedelta(days=2)
    with time_machine.travel(ended - dt.timedelta(hours=2), tick=False):  # screened before the procedure
        patient, version, screening = treatable_patient(clinic, steps=STEPS)
    treatment = record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=ended - dt.timedelta(minutes=45), ended_at=ended, areas="full face",
    )
    record_assessment(treatment=treatment, by=clinician, time_point_day=0, scores={"erythema": 3})
    record_assessment(treatment=treatment, by=clinician, time_point_day=1, scores={"erythema": 2})
    record_adverse_event(treatment=treatment, by=clinician, kind="milia", severity="mild", onset_date=ended.date())
    return treatment


@pytest.fixture
def two_treatments(clinic_a, clinician) -> tuple[Treatment, Treatment]:
    return treated(clinic_a, clinician), treated(clinic_a, clinician)


def get(user, url: str, **params: object):  # noqa: ANN201 - the response and the entries it wrote
    """GET ``url`` as ``user``: the response, and the access-log entries that one request wrote."""
    last = AuditEvent.objects.aggregate(last=Max("id"))["last"] or 0
    api = APIClient()
    api.force_authenticate(user)
    response = api.get(url, params, HTTP_X_REQUEST_ID=REQUEST_ID)
    return response, list(AuditEvent.objects.filter(id__gt=last).order_by("id"))


def named(label: str, ids: list[int]) -> list[dict[str, str]]:
    return [{"type": label, "id": str(pk)} for pk in ids]


def summary(entry: AuditEvent) -> tuple:
    return (entry.action, entry.actor, entry.actor_label, entry.clinic, entry.object_type, entry.object_id,
            entry.request_id)


# Each list of patient data: its address, the filter used (the first treatment's patient or treatment,
# or the clinic), and the rows that filter must show.
KINDS = {
    "patients": ("clinic", lambda t: t.clinic_id, lambda t: Patient.objects.filter(clinic=t.clinic)),
    "screenings": ("patient", lambda t: t.patient_id, lambda t: Screening.objects.filter(patient=t.patient)),
    "treatments": ("patient", lambda t: t.patient_id, lambda t: Treatment.objects.filter(patient=t.patient)),
    "reminders": ("treatment", lambda t: t.pk, lambda t: Reminder.objects.filter(treatment=t)),
    "outcomes": ("treatment", lambda t: t.pk, lambda t: OutcomeAssessment.objects.filter(treatment=t)),
    "adverse-events": ("treatment", lambda t: t.pk, lambda t: AdverseEvent.objects.filter(treatment=t)),
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_page_of_a_list_logs_who_what_which_clinic_the_filters_and_the_rows(kind, auditor, clinic_a, two_treatments):
    name, value_of, expected_rows = KINDS[kind]
    first, _other = two_treatments
    value = value_of(first)

    response, entries = get(auditor, f"/api/v1/{kind}/", **{name: value})

    assert response.status_code == 200, response.content
    ids = [row["id"] for row in response.json()["results"]]
    expected = expected_rows(first)
    assert sorted(ids) == sorted(expected.values_list("pk", flat=True)) and ids  # the filter picked these, not all
    label = expected.model._meta.label_lower
    assert len(entries) == 1, [summary(e) for e in entries]
    entry = entries[0]
    assert summary(entry) == ("list", auditor, auditor.username, clinic_a, label, "", REQUEST_ID)
    assert entry.detail == {"filters": {name: str(value)}, "page": 1, "count": len(ids), "objects": named(label, ids)}
    assert verify_chain().intact


def test_each_clinic_on_the_page_gets_its_own_entry_naming_only_its_rows(clinic_a, clinic_b, clinician, clinician_b):
    in_a, in_b = treated(clinic_a, clinician), treated(clinic_b, clinician_b)
    both = staff(Role.AUDITOR, clinic_a, username="auditor_of_two")
    MembershipFactory(user=both, clinic=clinic_b, role=Role.AUDITOR)

    response, entries = get(both, "/api/v1/outcomes/")

    assert response.status_code == 200
    assert [(e.clinic, e.object_type, e.actor) for e in entries] == [
        (clinic_a, "patients.outcomeassessment", both), (clinic_b, "patients.outcomeassessment", both),
    ]
    for entry, treatment in zip(entries, (in_a, in_b), strict=True):
        ids = [row["id"] for row in response.json()["results"] if row["treatment"] == treatment.pk]
        assert len(ids) == 2
        assert entry.detail == {"filters": {}, "page": 1, "count": 2,
                                "objects": named("patients.outcomeassessment", ids)}
    assert {e.request_id for e in entries} == {REQUEST_ID}

    # Filtered to one clinic, the page shows (and the log names) that clinic only.
    response, entries = get(both, "/api/v1/patients/", clinic=clinic_b.pk)
    assert [(e.clinic, e.detail["filters"], e.detail["objects"]) for e in entries] == [
        (clinic_b, {"clinic": str(clinic_b.pk)}, named("patients.patient", [in_b.patient_id])),
    ]


def test_an_empty_page_is_a_search_and_is_logged_against_each_clinic_searched(clinic_a, clinic_b, two_treatments):
    both = staff(Role.AUDITOR, clinic_a, username="auditor_of_two")
    MembershipFactory(user=both, clinic=clinic_b, role=Role.AUDITOR)

    response, entries = get(both, "/api/v1/patients/", email="nobody@example.com")

    assert response.status_code == 200 and response.json()["results"] == []
    assert [(e.action, e.clinic, e.object_type) for e in entries] == [
        ("list", clinic_a, "patients.patient"), ("list", clinic_b, "patients.patient"),
    ]
    assert [e.detail for e in entries] == [{"filters": {"email": "nobody@example.com"}, "page": 1, "count": 0}] * 2


def test_a_superusers_empty_page_is_logged_once_without_a_clinic(two_treatments):
    root = UserFactory(username="root", is_superuser=True)

    response, entries = get(root, "/api/v1/reminders/", status="sent")

    assert response.status_code == 200 and response.json()["results"] == []
    assert [(e.action, e.clinic, e.actor, e.detail["count"]) for e in entries] == [("list", None, root, 0)]


def test_a_later_page_logs_its_number_apart_from_the_filters_and_only_its_own_rows(
    auditor, clinic_a, two_treatments, monkeypatch
):
    monkeypatch.setattr(api_settings.DEFAULT_PAGINATION_CLASS, "page_size", 1)
    first, _other = two_treatments

    response, entries = get(auditor, "/api/v1/outcomes/", treatment=first.pk, page=2)

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert [e.detail for e in entries] == [{
        "filters": {"treatment": str(first.pk)}, "page": 2, "count": 1,
        "objects": named("patients.outcomeassessment", [row["id"]]),
    }]


@pytest.mark.parametrize(("path", "params", "status"), [
    ("/api/v1/outcomes/", {"treatment": "abc"}, 400),  # a bad filter: refused before any row is read
    ("/api/v1/reminders/", {"status": ["sent", "queued"]}, 400),  # a filter given twice
    ("/api/v1/patients/", {"page": "x"}, 400),
    ("/api/v1/treatments/", {"page": 99}, 404),  # past the last page: no rows shown
])
def test_a_list_request_that_fails_shows_no_row_and_logs_nothing(auditor, two_treatments, path, params, status):
    response, entries = get(auditor, path, **params)

    assert response.status_code == status, response.content
    assert entries == []


def test_someone_of_no_clinic_is_refused_and_nothing_is_logged(two_treatments):
    stranger = UserFactory(username="stranger")

    response, entries = get(stranger, "/api/v1/patients/")

    assert response.status_code == 403
    assert entries == []


@pytest.mark.parametrize("path", ["/api/v1/products/", "/api/v1/lots/", "/api/v1/protocols/", "/api/v1/clinics/",
                                  "/api/v1/contraindication-rules/"])
def test_lists_that_hold_no_patient_data_are_not_logged(auditor, two_treatments, path):
    response, entries = get(auditor, path)

    assert response.status_code == 200
    assert entries == []


def test_every_api_list_of_patient_data_is_logged():
    """A new list of a patients model is logged unless it is added here, with the reason, as not patient data."""
    not_patient_data = {Export}  # export jobs: who asked for which file; the download itself is logged
    lists = {
        basename: viewset for _prefix, viewset, basename in router.registry
        if hasattr(viewset, "list") and getattr(viewset, "queryset", None) is not None
        and viewset.queryset.model._meta.app_label == "patients" and viewset.queryset.model not in not_patient_data
    }
    assert set(lists) == {"patient", "screening", "treatment", "reminder", "outcome", "adverse-event"}
    assert {basename for basename, viewset in lists.items() if not getattr(viewset, "log_lists", False)} == set()
