"""The screening endpoints: run, list, override; field errors, roles and clinic scoping."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from clinic.models import AuditEvent
from patients.models import Screening, ScreeningOverride
from protocols.models import ProtocolVersion
from tests.factories import (
    IntakeFactory,
    PatientFactory,
    ProtocolFactory,
    RuleFactory,
    ScreeningFactory,
    StepFactory,
    VersionFactory,
    clinic_date,
)

pytestmark = pytest.mark.django_db


def clinic_today(patient) -> str:
    return clinic_date(timezone.now(), patient).isoformat()


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def version(clinic_a):
    RuleFactory(code="pregnancy-exosome", fact="pregnant", severity="absolute", applies_to="exosome",
                message="No safety data for exosomes in pregnancy.")
    RuleFactory(code="hsv", fact="hsv_history", severity="relative", message="HSV history",
                mitigation="Antiviral prophylaxis.")
    draft = VersionFactory(protocol=ProtocolFactory(clinic=clinic_a), status=ProtocolVersion.Status.DRAFT)
    StepFactory(version=draft, kind="in_clinic_application", timing="offset", offset_value=10, day=None,
                local_time=None)
    draft.status = ProtocolVersion.Status.PUBLISHED
    draft.save()
    return draft


@pytest.fixture
def patient(clinic_a):
    patient = PatientFactory(clinic=clinic_a)
    IntakeFactory(patient=patient, answers={"pregnant": True})
    return patient


def test_it_runs_a_screening_and_returns_the_findings(patient, version, coordinator):
    response = api_for(coordinator).post(
        f"/api/v1/patients/{patient.pk}/screenings/",
        {"protocol_version": version.pk, "planned_for": clinic_today(patient)}, format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["outcome"] == "blocked"
    assert body["findings"][0]["rule_code"] == "pregnancy-exosome"
    assert body["findings"][0]["message"] == "No safety data for exosomes in pregnancy."
    assert body["override"] is None
    assert Screening.objects.get().run_by == coordinator


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"planned_for": "TODAY"}, "protocol_version"),
        ({"protocol_version": 999999, "planned_for": "TODAY"}, "protocol_version"),
        ({"protocol_version": "VERSION", "planned_for": "tomorrow"}, "planned_for"),
        ({"protocol_version": "VERSION", "planned_for": "TODAY", "intake": 999999}, "intake"),
    ],
)
def test_bad_input_gets_400_with_field_errors_and_stores_nothing(patient, version, clinician, payload, field):
    placeholders = {"VERSION": version.pk, "TODAY": clinic_today(patient)}
    payload = {k: placeholders.get(v, v) if isinstance(v, str) else v for k, v in payload.items()}
    response = api_for(clinician).post(f"/api/v1/patients/{patient.pk}/screenings/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Screening.objects.exists()


def test_it_refuses_another_clinics_version_and_a_draft(patient, version, clinician, clinic_b):
    theirs = VersionFactory(protocol=ProtocolFactory(clinic=clinic_b))
    draft = VersionFactory(protocol=ProtocolFactory(clinic=patient.clinic), status=ProtocolVersion.Status.DRAFT)
    for other in (theirs, draft):
        response = api_for(clinician).post(
            f"/api/v1/patients/{patient.pk}/screenings/",
            {"protocol_version": other.pk, "planned_for": clinic_today(patient)}, format="json",
        )
        assert response.status_code == 400
        assert "protocol_version" in response.json()
    assert not Screening.objects.exists()


def test_a_patient_without_an_intake_gets_a_400(clinic_a, version, clinician):
    patient = PatientFactory(clinic=clinic_a)
    response = api_for(clinician).post(
        f"/api/v1/patients/{patient.pk}/screenings/", {"protocol_version": version.pk, "planned_for": clinic_today(patient)},
        format="json",
    )
    assert response.status_code == 400
    assert "intake" in response.json()


def test_an_auditor_may_list_but_not_run_screenings(patient, version, auditor):
    ScreeningFactory(patient=patient, protocol_version=version)
    client = api_for(auditor)
    assert len(client.get(f"/api/v1/patients/{patient.pk}/screenings/").json()) == 1
    response = client.post(f"/api/v1/patients/{patient.pk}/screenings/",
                           {"protocol_version": version.pk, "planned_for": clinic_today(patient)}, format="json")
    assert response.status_code == 403
    assert Screening.objects.count() == 1


def test_another_clinic_sees_none_of_it(patient, version, clinician_b):
    screening = ScreeningFactory(patient=patient, protocol_version=version, outcome="needs_override")
    client = api_for(clinician_b)
    assert client.get(f"/api/v1/patients/{patient.pk}/screenings/").status_code == 404
    assert client.post(f"/api/v1/patients/{patient.pk}/screenings/",
                       {"protocol_version": version.pk, "planned_for": clinic_today(patient)}, format="json").status_code == 404
    assert client.get("/api/v1/screenings/").json()["results"] == []
    assert client.get(f"/api/v1/screenings/{screening.pk}/").status_code == 404
    assert client.post(f"/api/v1/screenings/{screening.pk}/override/", {"reason": "x"},
                       format="json").status_code == 404
    assert not ScreeningOverride.objects.exists()


# --- override ---------------------------------------------------------------------------------


@pytest.fixture
def needs_override(patient, version):
    return ScreeningFactory(patient=patient, protocol_version=version, outcome="needs_override")


def test_a_clinician_overrides_through_the_api(needs_override, clinician):
    response = api_for(clinician).post(f"/api/v1/screenings/{needs_override.pk}/override/",
                                       {"reason": "Antiviral prescribed."}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["clinician"] == clinician.pk
    listed = api_for(clinician).get(f"/api/v1/screenings/{needs_override.pk}/").json()
    assert listed["override"]["reason"] == "Antiviral prescribed."
    assert AuditEvent.objects.filter(action="screening.view", object_id=str(needs_override.pk)).exists()


def test_the_schema_documents_the_201_an_override_answers_with():
    # Found by schemathesis: the override answered 201 while the schema promised 200.
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    responses = schema["paths"]["/api/v1/screenings/{id}/override/"]["post"]["responses"]
    assert "201" in responses and "200" not in responses


def test_a_coordinator_gets_403_and_nothing_is_stored(needs_override, coordinator):
    response = api_for(coordinator).post(f"/api/v1/screenings/{needs_override.pk}/override/",
                                         {"reason": "Looks fine."}, format="json")
    assert response.status_code == 403
    assert not ScreeningOverride.objects.exists()


def test_a_blocked_screening_or_a_missing_reason_gets_400(patient, version, needs_override, clinician):
    blocked = ScreeningFactory(patient=patient, protocol_version=version, outcome="blocked")
    client = api_for(clinician)
    response = client.post(f"/api/v1/screenings/{blocked.pk}/override/", {"reason": "Accept"}, format="json")
    assert response.status_code == 400
    assert "screening" in response.json()
    response = client.post(f"/api/v1/screenings/{needs_override.pk}/override/", {"reason": "  "}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()
    assert not ScreeningOverride.objects.exists()


def test_screenings_cannot_be_edited_or_deleted_through_the_api(needs_override, clinician):
    client = api_for(clinician)
    # Refused before the method is even considered (no write role on a read-only endpoint).
    assert client.patch(f"/api/v1/screenings/{needs_override.pk}/", {"outcome": "clear"},
                        format="json").status_code in (403, 405)
    assert client.delete(f"/api/v1/screenings/{needs_override.pk}/").status_code in (403, 405)
    needs_override.refresh_from_db()
    assert needs_override.outcome == "needs_override"


def test_a_question_left_unanswered_through_the_api_needs_an_override(clinic_a, version, clinician):
    patient = PatientFactory(clinic=clinic_a)
    client = api_for(clinician)
    intake = client.post(f"/api/v1/patients/{patient.pk}/intakes/",
                         {"answers": {"pregnant": False, "hsv_history": None}}, format="json")
    assert intake.status_code == 201, intake.json()
    response = client.post(f"/api/v1/patients/{patient.pk}/screenings/",
                           {"protocol_version": version.pk, "planned_for": clinic_today(patient)}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["outcome"] == "needs_override"
    (finding,) = body["findings"]
    assert finding["rule_code"] == "unanswered"
    assert finding["severity"] == "relative"
    assert finding["message"] == "Not answered on the intake: History of HSV (cold sores)?"
    assert finding["mitigation"] == "Ask the patient and record the intake again, or override with what they said."
    override = client.post(f"/api/v1/screenings/{body['id']}/override/",
                           {"reason": "Asked in person: she has never had cold sores."}, format="json")
    assert override.status_code == 201, override.json()


@pytest.mark.parametrize("planned_for", ["2020-01-01", "2099-01-01"])
def test_a_planned_date_out_of_range_gets_400_on_its_field_and_stores_nothing(patient, version, clinician,
                                                                             planned_for):
    response = api_for(clinician).post(f"/api/v1/patients/{patient.pk}/screenings/",
                                       {"protocol_version": version.pk, "planned_for": planned_for}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["planned_for"]
    assert planned_for in body["planned_for"][0]
    assert not Screening.objects.exists()


def test_the_schema_says_which_planned_dates_are_accepted():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    run = schema["components"]["schemas"]["RunScreeningRequest"]["properties"]["planned_for"]
    assert "today or later, at most 90 days ahead" in run["description"]
