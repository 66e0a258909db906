"""The outcome API: record and correct through the services, scoped reads, clear 400s, flat query counts."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from rest_framework.test import APIClient

from patients.models import AdverseEvent, OutcomeAssessment, TreatmentArm
from patients.outcomes import record_assessment
from tests.factories import ProtocolFactory, TreatmentFactory, UserFactory, VersionFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def setup(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with time_machine.travel(NOW, tick=False):
        yield


def _treatment(clinic, version=None):
    ended = NOW - dt.timedelta(days=10)
    extra = {"screening__protocol_version": version} if version else {}
    return TreatmentFactory(
        screening__patient__clinic=clinic, started_at=ended - dt.timedelta(hours=1), ended_at=ended, **extra
    )


@pytest.fixture
def treatment(clinic_a):
    return _treatment(clinic_a)


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_a_clinician_records_scores(clinician, treatment):
    response = _api(clinician).post(
        "/api/v1/outcomes/", {"treatment": treatment.pk, "time_point_day": 3, "erythema": 2, "pain": 5}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["erythema"], body["erythema_words"], body["source"], body["recorded_by"]) == (
        2, "2 — mild", "clinician", clinician.pk
    )
    assert OutcomeAssessment.objects.get().pain == 5


def test_out_of_range_scores_get_400_with_field_errors_and_nothing_is_stored(clinician, treatment):
    response = _api(clinician).post(
        "/api/v1/outcomes/", {"treatment": treatment.pk, "time_point_day": 3, "erythema": 6, "pruritus": 11}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["erythema"] == ["Erythema (CEA) is scored 0 (clear) to 4 (severe); 6 is out of range."]
    assert "pruritus" in response.json()
    assert not OutcomeAssessment.objects.exists()


def test_a_second_entry_for_the_same_time_point_gets_400(clinician, treatment):
    api = _api(clinician)
    api.post("/api/v1/outcomes/", {"treatment": treatment.pk, "time_point_day": 3, "erythema": 2}, format="json")
    response = api.post("/api/v1/outcomes/", {"treatment": treatment.pk, "time_point_day": 3, "erythema": 1}, format="json")
    assert response.status_code == 400
    assert "correct that entry instead" in response.json()["time_point_day"][0]


def test_a_correction_needs_a_reason_and_keeps_history(clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    api = _api(clinician)
    refused = api.patch(f"/api/v1/outcomes/{entry.pk}/", {"erythema": 2}, format="json")
    assert refused.status_code == 400
    assert "correction_reason" in refused.json()
    response = api.patch(f"/api/v1/outcomes/{entry.pk}/", {"erythema": 2, "correction_reason": "Recounted"}, format="json")
    assert response.status_code == 200
    assert response.json()["erythema"] == 2
    assert list(entry.history.order_by("history_id").values_list("erythema", flat=True)) == [3, 2]


def test_nobody_deletes_an_outcome(clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    assert _api(clinician).delete(f"/api/v1/outcomes/{entry.pk}/").status_code == 405
    assert OutcomeAssessment.objects.filter(pk=entry.pk).exists()


def test_a_coordinator_reads_but_cannot_write(coordinator, clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    api = _api(coordinator)
    assert api.get("/api/v1/outcomes/").json()["count"] == 1
    assert api.post("/api/v1/outcomes/", {"treatment": treatment.pk, "time_point_day": 1}, format="json").status_code == 403
    patch = api.patch(f"/api/v1/outcomes/{entry.pk}/", {"erythema": 0, "correction_reason": "x"}, format="json")
    assert patch.status_code == 403


def test_a_patient_report_cannot_be_corrected_by_staff(clinician, treatment):
    report = OutcomeAssessment.objects.create(treatment=treatment, time_point_day=3, source="patient", erythema=2)
    response = _api(clinician).patch(
        f"/api/v1/outcomes/{report.pk}/", {"erythema": 0, "correction_reason": "disagree"}, format="json"
    )
    assert response.status_code == 403
    report.refresh_from_db()
    assert report.erythema == 2


def test_another_clinic_sees_and_reaches_nothing(clinician_b, clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    AdverseEvent.objects.create(treatment=treatment, kind="pih", severity="mild", onset_date=NOW.date(), recorded_by=clinician)
    api = _api(clinician_b)
    assert api.get("/api/v1/outcomes/").json()["count"] == 0
    assert api.get(f"/api/v1/outcomes/?treatment={treatment.pk}").json()["count"] == 0
    assert api.get(f"/api/v1/outcomes/{entry.pk}/").status_code == 404
    assert api.get("/api/v1/adverse-events/").json()["count"] == 0
    assert api.get(f"/api/v1/treatments/{treatment.pk}/outcomes/").status_code == 404
    assert api.get(f"/api/v1/reports/protocols/{treatment.protocol_version.protocol_id}/").status_code == 404
    response = api.post("/api/v1/outcomes/", {"treatment": treatment.pk, "time_point_day": 3, "erythema": 1}, format="json")
    assert response.status_code == 400
    assert "treatment" in response.json()
    patch = api.patch(f"/api/v1/outcomes/{entry.pk}/", {"erythema": 0, "correction_reason": "x"}, format="json")
    assert patch.status_code == 404


def test_anonymous_requests_are_refused(treatment):
    assert APIClient().get("/api/v1/outcomes/").status_code in (401, 403)
    assert APIClient().get(f"/api/v1/treatments/{treatment.pk}/outcomes/").status_code in (401, 403)


def test_the_outcome_list_query_count_does_not_grow_with_rows(clinician, clinic_a, django_assert_max_num_queries):
    api = _api(clinician)

    def build(n):
        for _ in range(n):
            treatment = _treatment(clinic_a)
            record_assessment(treatment=treatment, by=clinician, time_point_day=1, scores={"erythema": 2})
            record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 1})

    build(2)
    with django_assert_max_num_queries(10) as few:
        api.get("/api/v1/outcomes/")
    build(15)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert api.get("/api/v1/outcomes/").json()["count"] == 34


def test_adverse_events_are_recorded_through_the_service(clinician, treatment, mailoutbox, django_capture_on_commit_callbacks):
    api = _api(clinician)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/adverse-events/",
            {"treatment": treatment.pk, "kind": "hsv_reactivation", "severity": "severe", "onset_date": "2026-03-15"},
            format="json",
        )
    assert response.status_code == 201, response.json()
    assert len(mailoutbox) == 1
    bad = api.post(
        "/api/v1/adverse-events/",
        {"treatment": treatment.pk, "kind": "sunburn", "severity": "mild", "onset_date": "2026-03-15"},
        format="json",
    )
    assert bad.status_code == 400
    assert "kind" in bad.json()
    assert AdverseEvent.objects.count() == 1


def test_the_adverse_event_list_query_count_does_not_grow_with_rows(clinician, clinic_a, django_assert_max_num_queries):
    api = _api(clinician)

    def build(n):
        for _ in range(n):
            AdverseEvent.objects.create(
                treatment=_treatment(clinic_a), kind="milia", severity="mild", onset_date=NOW.date(), recorded_by=UserFactory()
            )

    build(2)
    with django_assert_max_num_queries(10) as few:
        api.get("/api/v1/adverse-events/")
    build(12)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert api.get("/api/v1/adverse-events/").json()["count"] == 14


def test_a_treatments_outcomes_come_with_measures_per_arm(auditor, clinician, treatment):
    left = TreatmentArm.objects.create(treatment=treatment, label="left")
    right = TreatmentArm.objects.create(treatment=treatment, label="right", is_control=True)
    record_assessment(treatment=treatment, by=clinician, time_point_day=1, arm=left, scores={"erythema": 3})
    record_assessment(treatment=treatment, by=clinician, time_point_day=1, arm=right, scores={"erythema": 4})
    body = _api(auditor).get(f"/api/v1/treatments/{treatment.pk}/outcomes/").json()
    assert body["treatment"] == treatment.pk
    assert body["time_points"] == [0, 1, 3, 7, 14, 28]
    assert {m["arm_label"]: m["peak_erythema"] for m in body["measures"]} == {"left": 3, "right": 4}
    assert len(body["assessments"]) == 2


def test_the_protocol_report_gives_the_numbers_behind_the_pages(clinician, clinic_a):
    protocol = ProtocolFactory(clinic=clinic_a, name="Microneedling + exosome")
    version = VersionFactory(protocol=protocol)
    for day in (2, 4):
        treatment = _treatment(clinic_a, version)
        record_assessment(
            treatment=treatment, by=clinician, time_point_day=day, scores={"erythema": 1, "reepithelialisation_complete": True}
        )
    body = _api(clinician).get(f"/api/v1/reports/protocols/{protocol.pk}/").json()
    assert body["protocol"]["name"] == "Microneedling + exosome"
    assert body["overall"]["treatments"] == 2
    assert body["overall"]["reepithelialisation_days"] == {"n": 2, "median": 3.0, "q1": 2.5, "q3": 3.5}
    assert [v["label"] for v in body["versions"]] == [f"Microneedling + exosome v{version.number}"]
    assert "not a randomised trial" in body["note"]
    assert body["split_face"]["treatments"] == 0


def test_the_protocol_report_refuses_bad_filters_with_400(clinician, clinic_a):
    protocol = ProtocolFactory(clinic=clinic_a)
    response = _api(clinician).get(f"/api/v1/reports/protocols/{protocol.pk}/", {"date_from": "soon", "fitzpatrick_type": 8})
    assert response.status_code == 400
    assert {"date_from", "fitzpatrick_type"} <= set(response.json())


def test_the_schema_lists_the_outcome_endpoints(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    for path in ["/api/v1/outcomes/", "/api/v1/adverse-events/", "/api/v1/treatments/{treatment_id}/outcomes/",
                 "/api/v1/reports/protocols/{id}/"]:
        assert path in paths
