"""The review pages in the admin: healing charts and reports, for the clinic's staff only."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.urls import reverse

from clinic.models import AuditEvent
from patients.models import OutcomeAssessment, TreatmentArm
from tests.factories import PatientFactory, ProtocolFactory, TreatmentFactory, VersionFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def setup(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with time_machine.travel(NOW, tick=False):
        yield


def _treatment(clinic, version=None, patient=None):
    ended = NOW - dt.timedelta(days=20)
    kwargs = {"screening__protocol_version": version} if version else {}
    if patient is not None:
        kwargs["screening__patient"] = patient
    else:
        kwargs["screening__patient__clinic"] = clinic
    return TreatmentFactory(started_at=ended - dt.timedelta(hours=1), ended_at=ended, **kwargs)


@pytest.fixture
def protocol(clinic_a):
    return ProtocolFactory(clinic=clinic_a, name="Fractional CO2 + exosome")


@pytest.fixture
def split_face(clinic_a, protocol):
    patient = PatientFactory(clinic=clinic_a, given_name="Kim", family_name="Okafor")
    treatment = _treatment(clinic_a, VersionFactory(protocol=protocol), patient=patient)
    left = TreatmentArm.objects.create(treatment=treatment, label="left")
    right = TreatmentArm.objects.create(treatment=treatment, label="right", is_control=True)
    for day, (e_left, e_right) in {1: (3, 4), 3: (2, 3), 7: (0, 1)}.items():
        OutcomeAssessment.objects.create(treatment=treatment, arm=left, time_point_day=day, erythema=e_left, oedema=1)
        OutcomeAssessment.objects.create(treatment=treatment, arm=right, time_point_day=day, erythema=e_right, oedema=2)
    OutcomeAssessment.objects.create(treatment=treatment, time_point_day=3, source="patient", erythema=1)
    return treatment


def test_the_patient_healing_page_shows_a_chart_per_treatment_and_its_measures(client, auditor, split_face):
    client.force_login(auditor)
    url = reverse("admin:outcomes_patient_healing", args=[split_face.patient_id])
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert reverse("admin:outcomes_treatment_chart", args=[split_face.pk]) in body
    assert "left (exosome)" in body and "right (control)" in body
    assert "Enter scores" not in body  # an auditor views; only clinicians enter
    assert AuditEvent.objects.filter(action="view", object_id=str(split_face.patient_id)).count() == 1


def test_the_healing_chart_is_an_svg_with_one_line_per_arm(client, coordinator, split_face):
    client.force_login(coordinator)
    response = client.get(reverse("admin:outcomes_treatment_chart", args=[split_face.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response["X-Content-Type-Options"] == "nosniff"
    svg = response.content.decode()
    assert svg.lstrip().startswith("<?xml")
    for text in ["Erythema (CEA)", "Oedema", "left", "right", "patient-reported redness", "Days after the procedure"]:
        assert text in svg
    assert "<script" not in svg


@pytest.mark.parametrize(
    "url_name", ["admin:outcomes_patient_healing", "admin:outcomes_treatment_chart"],
)
def test_another_clinics_patient_and_chart_give_404(client, clinician_b, split_face, url_name):
    client.force_login(clinician_b)
    target = split_face.patient_id if url_name.endswith("healing") else split_face.pk
    assert client.get(reverse(url_name, args=[target])).status_code == 404


def test_review_pages_need_a_signed_in_member(client, split_face):
    response = client.get(reverse("admin:outcomes_treatment_chart", args=[split_face.pk]))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_protocol_report_page_shows_numbers_a_chart_and_the_observational_label(client, clinician, protocol, split_face):
    client.force_login(clinician)
    response = client.get(reverse("admin:outcomes_protocol_report", args=[protocol.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Fractional CO2 + exosome" in body
    assert 'data-metric="treatments">1<' in body
    assert "not a randomised trial" in body
    chart = client.get(reverse("admin:outcomes_protocol_chart", args=[protocol.pk]))
    assert chart.status_code == 200
    assert "Mean erythema by day" in chart.content.decode()


def test_the_protocol_report_refuses_bad_filters_with_messages(client, clinician, protocol):
    client.force_login(clinician)
    response = client.get(
        reverse("admin:outcomes_protocol_report", args=[protocol.pk]), {"date_from": "2026-03-10", "date_to": "2026-03-01"}
    )
    assert response.status_code == 400
    assert "before its start" in response.content.decode()


@pytest.mark.parametrize("url_name", ["admin:outcomes_protocol_report", "admin:outcomes_protocol_chart"])
def test_another_clinics_protocol_gives_404(client, clinician_b, protocol, url_name):
    client.force_login(clinician_b)
    assert client.get(reverse(url_name, args=[protocol.pk])).status_code == 404


def test_two_protocols_side_by_side_page_and_chart(client, clinician, clinic_a, protocol, split_face):
    other = ProtocolFactory(clinic=clinic_a, name="Microneedling + exosome")
    _treatment(clinic_a, VersionFactory(protocol=other))
    client.force_login(clinician)
    query = {"a": protocol.pk, "b": other.pk}
    body = client.get(reverse("admin:outcomes_compare"), query).content.decode()
    assert "Fractional CO2 + exosome" in body and "Microneedling + exosome" in body
    chart = client.get(reverse("admin:outcomes_compare_chart"), query)
    assert chart["Content-Type"] == "image/svg+xml"


def test_comparing_with_another_clinics_protocol_gives_404(client, clinician, clinic_b, protocol):
    theirs = ProtocolFactory(clinic=clinic_b)
    client.force_login(clinician)
    for url_name in ["admin:outcomes_compare", "admin:outcomes_compare_chart"]:
        assert client.get(reverse(url_name), {"a": protocol.pk, "b": theirs.pk}).status_code == 404


def test_the_split_face_page_labels_the_comparison_as_observational(client, clinician, split_face):
    client.force_login(clinician)
    body = client.get(reverse("admin:outcomes_split_face")).content.decode()
    assert '<p class="observational">Observational comparison of this clinic' in body
    assert "Observational. Observational" not in body
    assert "1 split-face treatment with one exosome arm and one control arm" in body
    assert "at least 6 are needed" in body
    chart = client.get(reverse("admin:outcomes_split_face_chart")).content.decode()
    assert "exosome arm" in chart and "control arm" in chart


def test_the_review_index_lists_protocols_and_finds_patients_of_the_clinic_only(
    client, clinician, clinic_b, protocol, split_face
):
    PatientFactory(clinic=clinic_b, family_name="Okafor", given_name="Other")
    client.force_login(clinician)
    body = client.get(reverse("admin:outcomes_review"), {"q": "okafor"}).content.decode()
    assert reverse("admin:outcomes_protocol_report", args=[protocol.pk]) in body
    assert "Okafor, Kim" in body
    assert "Okafor, Other" not in body


def test_the_review_index_query_count_does_not_grow_with_treatments(
    client, clinician, clinic_a, protocol, django_assert_max_num_queries
):
    version = VersionFactory(protocol=protocol)
    client.force_login(clinician)
    _treatment(clinic_a, version)
    client.get(reverse("admin:outcomes_review"))
    with django_assert_max_num_queries(30) as few:
        client.get(reverse("admin:outcomes_review"))
    for _ in range(12):
        treatment = _treatment(clinic_a, version)
        OutcomeAssessment.objects.create(treatment=treatment, time_point_day=1, erythema=2)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(reverse("admin:outcomes_review")).status_code == 200
