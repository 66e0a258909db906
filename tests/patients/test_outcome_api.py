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
    url = f"/api/v1/outcomes/{entry.pk}/"
    revision = api.get(url).json()["revision"]
    refused = api.patch(url, {"erythema": 2, "revision": revision}, format="json")
    assert refused.status_code == 400
    assert "correction_reason" in refused.json()
    response = api.patch(url, {"erythema": 2, "correction_reason": "Recounted the papules", "revision": revision}, format="json")
    assert response.status_code == 200
    assert response.json()["erythema"] == 2
    assert response.json()["revision"] == revision + 1  # the revision to send with the next correction
    assert list(entry.history.order_by("history_id").values_list("erythema", flat=True)) == [3, 2]


def test_a_correction_made_on_an_older_reading_is_refused_with_409(clinician, clinic_a, treatment):
    from clinic.models import Role
    from tests.factories import staff

    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 2, "pain": 3})
    url = f"/api/v1/outcomes/{entry.pk}/"
    read_before = _api(clinician).get(url).json()["revision"]
    colleague = staff(Role.CLINICIAN, clinic_a, username="dr_okafor")
    theirs = _api(colleague).patch(url, {"erythema": 4, "correction_reason": "Photo shows severe", "revision": read_before},
                                   format="json")
    assert theirs.status_code == 200

    response = _api(clinician).patch(url, {"pain": 6, "correction_reason": "Pain was 6", "revision": read_before}, format="json")

    assert response.status_code == 409
    assert response.json() == {"detail": "dr_okafor changed this record on 20 Mar 2026 at 12:00 after you opened it "
                                         "(reason given: Photo shows severe). Nothing was saved: reload it to see that change, "
                                         "then make yours again."}
    entry.refresh_from_db()
    assert (entry.erythema, entry.pain) == (4, 3)
    fresh = _api(clinician).get(url).json()["revision"]
    again = _api(clinician).patch(url, {"pain": 6, "correction_reason": "Pain was 6", "revision": fresh}, format="json")
    assert again.status_code == 200
    assert (again.json()["erythema"], again.json()["pain"]) == (4, 6)


def test_a_correction_without_the_revision_it_read_gets_400(clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    response = _api(clinician).patch(f"/api/v1/outcomes/{entry.pk}/", {"erythema": 2, "correction_reason": "Scored too early"},
                                     format="json")
    assert response.status_code == 400
    assert "Send the revision you read" in response.json()["revision"][0]
    entry.refresh_from_db()
    assert entry.erythema == 3


def test_nobody_deletes_an_outcome(clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    assert _api(clinician).delete(f"/api/v1/outcomes/{entry.pk}/").status_code == 405
    assert OutcomeAssessment.objects.filter(pk=entry.pk).exists()


def test_a_coordinator_reads_but_cannot_write(coordinator, clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    api = _api(coordinator)
    assert api.get("/api/v1/outcomes/").json()["count"] == 1
    assert api.post("/api/v1/outcomes/", {"treatment": treatment.pk, "time_point_day": 1}, format="json").status_code == 403
    patch = api.patch(f"/api/v1/outcomes/{entry.pk}/", {"erythema": 0, "correction_reason": "Scored too early"}, format="json")
    assert patch.status_code == 403


def test_a_patient_report_cannot_be_corrected_by_staff(clinician, treatment):
    report = OutcomeAssessment.objects.create(treatment=treatment, time_point_day=3, source="patient", erythema=2)
    response = _api(clinician).patch(
        f"/api/v1/outcomes/{report.pk}/", {"erythema": 0, "correction_reason": "Patient disagreed with score", "revision": 0},
        format="json",
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
    patch = api.patch(f"/api/v1/outcomes/{entry.pk}/", {"erythema": 0, "correction_reason": "Scored too early"}, format="json")
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


def test_adverse_events_are_recorded_through_the_service(
    clinician, treatment, mailoutbox, django_capture_on_commit_callbacks, alerts_sent_at_once
):
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


def test_a_retried_adverse_event_post_is_refused_with_409_and_emails_no_one_again(
    clinician, treatment, mailoutbox, django_capture_on_commit_callbacks, alerts_sent_at_once
):
    api = _api(clinician)
    event = {"treatment": treatment.pk, "kind": "infection", "severity": "severe", "onset_date": "2026-03-15"}
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post("/api/v1/adverse-events/", event, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        retried = api.post("/api/v1/adverse-events/", event, format="json")

    assert first.status_code == 201
    assert retried.status_code == 409
    assert retried.json()["existing_event"] == f"/api/v1/adverse-events/{first.json()['id']}/"
    assert retried.json()["detail"].startswith("This adverse event is already recorded: Infection (severe), onset 15 Mar")
    assert AdverseEvent.objects.count() == 1
    assert len(mailoutbox) == 1
    other_side = api.post("/api/v1/adverse-events/", {**event, "description": "Second site, right cheek"}, format="json")
    assert other_side.status_code == 201


def test_an_adverse_event_correction_carries_the_revision_it_read(clinician, treatment):
    api = _api(clinician)
    created = api.post(
        "/api/v1/adverse-events/",
        {"treatment": treatment.pk, "kind": "milia", "severity": "mild", "onset_date": "2026-03-15"}, format="json",
    ).json()
    url = f"/api/v1/adverse-events/{created['id']}/"
    resolved = api.patch(url, {"resolution_date": "2026-03-19", "correction_reason": "Resolved at review",
                               "revision": created["revision"]},
                         format="json")
    assert resolved.status_code == 200
    stale = api.patch(url, {"severity": "moderate", "correction_reason": "Spread to the neck", "revision": created["revision"]},
                      format="json")
    assert stale.status_code == 409
    assert AdverseEvent.objects.get().severity == "mild"


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
    assert "409" in paths["/api/v1/outcomes/{id}/"]["patch"]["responses"]
    assert "409" in paths["/api/v1/adverse-events/{id}/"]["patch"]["responses"]
    assert "409" in paths["/api/v1/adverse-events/"]["post"]["responses"]
