"""Problems patients flagged, through the API: ``?problem_flag=open`` lists them, ``review-flag`` reviews one.

The review goes through ``review_problem_flag``: who and when, the note, history
and the access log.  Reviewing again is a 409 that changes nothing; another
clinic's report is a 404; an auditor gets a 403.  Every answer here is checked
against the OpenAPI schema, as schemathesis does in CI.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests
import schemathesis
import time_machine
from django.db.models import Max
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from rest_framework.test import APIClient
from schemathesis.core.transport import Response as SchemathesisResponse

from clinic.audit import verify_chain
from clinic.models import AuditEvent, Role
from patients.links import create_link
from patients.models import OutcomeAssessment, PatientLink
from patients.outcomes import record_assessment, record_self_report, review_problem_flag
from tests.factories import MembershipFactory, TreatmentFactory, staff

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 18, 0, tzinfo=dt.UTC)
REQUEST_ID = "req-flag-review-0001"
NOTE = "Phoned; seen tomorrow 9:00"
REVIEW = "/api/v1/outcomes/{}/review-flag/"


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        raw = SchemaGenerator().get_schema(request=None, public=True)
    return schemathesis.openapi.from_dict(json.loads(OpenApiJsonRenderer().render(raw)))


def conforms(schema, path: str, method: str, response) -> None:  # noqa: ANN001
    """Fail unless the status is documented for the operation and the body matches its schema."""
    operation = schema[path][method]
    assert str(response.status_code) in operation.definition.raw["responses"], response.status_code
    answer = SchemathesisResponse(
        response.status_code, {name.lower(): [value] for name, value in response.headers.items()}, response.content,
        requests.Request(method, f"http://testserver{response.wsgi_request.path}").prepare(), 0.0, True,
    )
    schema.validate_response(operation, answer)


def treatment_at(clinic, given_name: str = "Robin"):  # noqa: ANN201 - a Treatment
    ended = NOW - dt.timedelta(days=3, hours=6)
    return TreatmentFactory(
        screening__patient__clinic=clinic, screening__patient__given_name=given_name,
        started_at=ended - dt.timedelta(hours=1), ended_at=ended,
    )


def self_report(treatment, *, flagged: bool = True, day: int = 3) -> OutcomeAssessment:  # noqa: ANN001
    link = create_link(patient=treatment.patient, purpose=PatientLink.Purpose.SELF_REPORT, treatment=treatment,
                       time_point_day=day)
    answers = {"erythema": 4, "problem_flagged": flagged, "notes": "Yellow crusts" if flagged else "All fine"}
    report, _created = record_self_report(link=link, answers=answers)
    return report


def api(user) -> APIClient:  # noqa: ANN001
    client = APIClient()
    client.force_authenticate(user)
    return client


def post_review(user, report: OutcomeAssessment, body: object = None):  # noqa: ANN001, ANN201
    """POST a review of ``report`` as ``user``: the response, and the access-log entries that request wrote."""
    last = AuditEvent.objects.aggregate(last=Max("id"))["last"] or 0
    response = api(user).post(REVIEW.format(report.pk), body, format="json", HTTP_X_REQUEST_ID=REQUEST_ID)
    return response, list(AuditEvent.objects.filter(id__gt=last).order_by("id"))


def state(report: OutcomeAssessment) -> tuple:
    report.refresh_from_db()
    return report.flag_reviewed_at, report.flag_reviewed_by, report.flag_review_note


def check_review(schema, response) -> None:  # noqa: ANN001
    conforms(schema, "/api/v1/outcomes/{id}/review-flag/", "POST", response)


# --- the list ----------------------------------------------------------------------------------------------


def test_it_lists_the_open_problems_of_the_users_clinics_only(schema, clinician, coordinator, clinic_a, clinic_b):
    robin, sam = self_report(treatment_at(clinic_a)), self_report(treatment_at(clinic_a, "Sam"))
    reviewed = self_report(treatment_at(clinic_a, "Kim"))
    review_problem_flag(assessment=reviewed, by=coordinator, note=NOTE)
    self_report(robin.treatment, flagged=False, day=7)  # the patient said all is well
    record_assessment(treatment=robin.treatment, by=clinician, time_point_day=3, scores={"erythema": 2})
    self_report(treatment_at(clinic_b, "Lee"))  # another clinic's

    response = api(clinician).get("/api/v1/outcomes/", {"problem_flag": "open"})

    assert response.status_code == 200
    conforms(schema, "/api/v1/outcomes/", "GET", response)
    rows = response.json()["results"]
    assert sorted(row["id"] for row in rows) == sorted([robin.pk, sam.pk])
    assert {(row["problem_flagged"], row["flag_reviewed_at"], row["flag_reviewed_by"], row["flag_review_note"])
            for row in rows} == {(True, None, None, "")}

    done = api(clinician).get("/api/v1/outcomes/", {"problem_flag": "reviewed"})
    assert [(row["id"], row["flag_reviewed_at"], row["flag_reviewed_by"], row["flag_review_note"])
            for row in done.json()["results"]] == [(reviewed.pk, "2026-03-20T18:00:00Z", coordinator.pk, NOTE)]


def test_it_narrows_the_open_problems_to_one_clinic_for_someone_in_two(clinic_a, clinic_b):
    in_a, in_b = self_report(treatment_at(clinic_a)), self_report(treatment_at(clinic_b, "Lee"))
    both = staff(Role.COORDINATOR, clinic_a, username="coordinator_of_two")
    MembershipFactory(user=both, clinic=clinic_b, role=Role.COORDINATOR)

    def listed(**query: object) -> list[int]:
        return sorted(row["id"] for row in api(both).get("/api/v1/outcomes/", query).json()["results"])

    assert listed(problem_flag="open") == sorted([in_a.pk, in_b.pk])
    assert listed(problem_flag="open", clinic=clinic_b.pk) == [in_b.pk]


def test_it_refuses_a_problem_flag_filter_it_does_not_know(schema, clinician):
    response = api(clinician).get("/api/v1/outcomes/", {"problem_flag": "maybe"})

    assert response.status_code == 400
    assert "problem_flag" in response.json()
    conforms(schema, "/api/v1/outcomes/", "GET", response)


def test_the_list_of_open_problems_is_in_the_access_log_with_its_filter(auditor, clinic_a):
    robin, sam = self_report(treatment_at(clinic_a)), self_report(treatment_at(clinic_a, "Sam"))
    last = AuditEvent.objects.aggregate(last=Max("id"))["last"] or 0

    response = api(auditor).get("/api/v1/outcomes/", {"problem_flag": "open"}, HTTP_X_REQUEST_ID=REQUEST_ID)

    assert response.status_code == 200
    [entry] = AuditEvent.objects.filter(id__gt=last)
    assert (entry.action, entry.actor, entry.clinic, entry.object_type, entry.request_id) == (
        "list", auditor, clinic_a, "patients.outcomeassessment", REQUEST_ID,
    )
    ids = [row["id"] for row in response.json()["results"]]
    assert sorted(ids) == sorted([robin.pk, sam.pk])
    assert entry.detail == {"filters": {"problem_flag": "open"}, "page": 1, "count": 2,
                            "objects": [{"type": "patients.outcomeassessment", "id": str(pk)} for pk in ids]}


# --- reviewing one -------------------------------------------------------------------------------------------


def test_a_coordinator_reviews_a_problem_with_a_note_and_it_is_logged(schema, coordinator, clinic_a):
    report = self_report(treatment_at(clinic_a))

    response, entries = post_review(coordinator, report, {"note": f"  {NOTE} "})

    assert response.status_code == 200, response.content
    check_review(schema, response)
    body = response.json()
    assert (body["id"], body["flag_reviewed_at"], body["flag_reviewed_by"], body["flag_review_note"]) == (
        report.pk, "2026-03-20T18:00:00Z", coordinator.pk, NOTE,
    )
    assert body["revision"] == report.history.count() == 2  # recorded, then reviewed
    assert state(report) == (NOW, coordinator, NOTE)
    latest = report.history.order_by("-history_id").first()
    assert (latest.history_user, latest.history_change_reason) == (coordinator, "Problem flagged by the patient reviewed")
    [entry] = entries
    assert (entry.action, entry.actor, entry.clinic, entry.object_type, entry.object_id, entry.request_id) == (
        "self_report.flag_reviewed", coordinator, clinic_a, "patients.outcomeassessment", str(report.pk), REQUEST_ID,
    )
    assert entry.detail == {"note": NOTE, "day": 3,
                            "objects": [{"type": "patients.treatment", "id": str(report.treatment_id)}]}
    assert verify_chain().intact
    listed = api(coordinator).get("/api/v1/outcomes/", {"problem_flag": "open"}).json()
    assert listed["count"] == 0


def test_the_note_may_be_left_out(schema, clinician, clinic_a):
    report = self_report(treatment_at(clinic_a))

    response, entries = post_review(clinician, report)

    assert response.status_code == 200, response.content
    check_review(schema, response)
    assert state(report) == (NOW, clinician, "")
    assert [entry.action for entry in entries] == ["self_report.flag_reviewed"]


def test_reviewing_a_problem_again_is_a_409_that_keeps_the_first_review(schema, clinician, coordinator, clinic_a):
    coordinator.first_name, coordinator.last_name = "Cora", "Dunn"
    coordinator.save()
    report = self_report(treatment_at(clinic_a))
    review_problem_flag(assessment=report, by=coordinator, note="First look")

    response, entries = post_review(clinician, report, {"note": "Also looked"})

    assert response.status_code == 409
    check_review(schema, response)
    assert response.json() == {"detail": "This problem was already reviewed by Cora Dunn at 2026-03-20T18:00:00Z; "
                                         "that review and its note stay, and nothing was changed."}
    assert state(report) == (NOW, coordinator, "First look")
    assert entries == []
    assert report.history.count() == 2


def test_another_clinics_problem_is_not_found_and_stays_open(schema, clinician_b, clinic_a):
    report = self_report(treatment_at(clinic_a))

    response, entries = post_review(clinician_b, report, {"note": NOTE})

    assert response.status_code == 404
    check_review(schema, response)
    assert state(report) == (None, None, "")
    assert entries == []


def test_an_auditor_gets_403_and_changes_nothing(schema, auditor, clinic_a):
    report = self_report(treatment_at(clinic_a))

    response, entries = post_review(auditor, report, {"note": NOTE})

    assert response.status_code == 403
    check_review(schema, response)
    assert response.json() == {
        "detail": "Only clinicians and staff who manage reminders may review a problem a patient flagged."
    }
    assert state(report) == (None, None, "")
    assert entries == []


def test_an_auditor_here_and_clinician_there_may_not_review_here(schema, clinic_a, clinic_b):
    report = self_report(treatment_at(clinic_a))
    reader = staff(Role.AUDITOR, clinic_a, username="auditor_here")
    MembershipFactory(user=reader, clinic=clinic_b, role=Role.CLINICIAN)

    response, entries = post_review(reader, report, {"note": NOTE})

    assert response.status_code == 403
    check_review(schema, response)
    assert state(report) == (None, None, "")
    assert entries == []


@pytest.mark.parametrize(("body", "field"), [
    ({"note": "x" * 2001}, "note"),
    ({"note": 12}, "note"),
    ({"note": None}, "note"),
    ({"note": "a\x00b"}, "note"),
    (["not", "an", "object"], "non_field_errors"),
])
def test_a_bad_note_is_a_400_naming_it_and_nothing_is_reviewed(schema, clinician, clinic_a, body, field):
    report = self_report(treatment_at(clinic_a))

    response, entries = post_review(clinician, report, body)

    assert response.status_code == 400
    check_review(schema, response)
    assert list(response.json()) == [field]
    assert state(report) == (None, None, "")
    assert entries == []


def test_a_note_of_2000_characters_is_kept_whole(clinician, clinic_a):
    report = self_report(treatment_at(clinic_a))

    response, _entries = post_review(clinician, report, {"note": "x" * 2000})

    assert response.status_code == 200
    assert state(report)[2] == "x" * 2000


def test_only_a_problem_a_patient_flagged_can_be_reviewed(schema, clinician, clinic_a):
    treatment = treatment_at(clinic_a)
    fine = self_report(treatment, flagged=False)
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 2})

    for report in (fine, entry):
        response, entries = post_review(clinician, report, {"note": NOTE})
        assert response.status_code == 400
        check_review(schema, response)
        assert response.json() == {"non_field_errors": ["This report has no problem flagged by the patient to review."]}
        assert state(report) == (None, None, "")
        assert entries == []


def test_the_schema_describes_the_review_its_errors_and_the_filter(schema):
    operation = schema["/api/v1/outcomes/{id}/review-flag/"]["POST"].definition.raw
    assert {"200", "400", "403", "404", "409"} <= set(operation["responses"])
    assert "already reviewed" in operation["responses"]["409"]["description"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/OutcomeAssessment")
    note = schema.raw_schema["components"]["schemas"]["FlagReviewRequest"]["properties"]["note"]
    assert (note["type"], note["maxLength"]) == ("string", 2000)
    representation = schema.raw_schema["components"]["schemas"]["OutcomeAssessment"]["properties"]
    for name in ("flag_reviewed_at", "flag_reviewed_by", "flag_review_note"):
        assert representation[name]["readOnly"] is True
    listing = schema["/api/v1/outcomes/"]["GET"].definition.raw
    [problem_flag] = [p for p in listing["parameters"] if p["name"] == "problem_flag"]
    assert problem_flag["schema"]["enum"] == ["open", "reviewed"]
