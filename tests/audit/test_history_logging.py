"""A record's history (its list of changes and each past version) is logged like a look at the record itself."""

from __future__ import annotations

import datetime as dt

import pytest

from clinic.audit import verify_chain
from clinic.models import AuditEvent
from patients.models import OutcomeAssessment
from tests.factories import PatientFactory, ProtocolFactory, TreatmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def entry(clinic_a, clinician):
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a, ended_at=dt.datetime(2026, 3, 10, tzinfo=dt.UTC))
    assessment = OutcomeAssessment.objects.create(treatment=treatment, time_point_day=3, recorded_by=clinician, erythema=1)
    assessment.erythema = 2
    assessment.save()
    return assessment


def test_it_logs_who_opened_an_outcomes_history(client, auditor, clinic_a, entry):
    client.force_login(auditor)

    assert client.get(f"/admin/patients/outcomeassessment/{entry.pk}/history/").status_code == 200

    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.clinic, event.object_type, event.object_id) == (
        "history.view", auditor, clinic_a, "patients.outcomeassessment", str(entry.pk)
    )
    assert verify_chain().intact


def test_it_logs_each_past_version_opened_with_its_history_id(client, auditor, clinic_a, entry):
    first = entry.history.earliest().history_id
    client.force_login(auditor)

    assert client.get(f"/admin/patients/outcomeassessment/{entry.pk}/history/{first}/").status_code == 200

    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.clinic, event.object_id, event.detail) == (
        "history.revision_view", auditor, clinic_a, str(entry.pk), {"history_id": first}
    )


def test_a_patients_history_is_logged_though_their_page_logs_its_own_way(client, clinician, clinic_a):
    patient = PatientFactory(clinic=clinic_a)
    client.force_login(clinician)

    client.get(f"/admin/patients/patient/{patient.pk}/history/")
    client.get(f"/admin/patients/patient/{patient.pk}/history/{patient.history.get().history_id}/")

    assert list(AuditEvent.objects.order_by("id").values_list("action", "object_type", "object_id")) == [
        ("history.view", "patients.patient", str(patient.pk)),
        ("history.revision_view", "patients.patient", str(patient.pk)),
    ]


def test_it_logs_nothing_for_the_history_of_a_record_that_is_not_patient_data(client, clinic_admin, clinic_a):
    protocol = ProtocolFactory(clinic=clinic_a)
    client.force_login(clinic_admin)

    assert client.get(f"/admin/protocols/protocol/{protocol.pk}/history/").status_code == 200
    url = f"/admin/protocols/protocol/{protocol.pk}/history/{protocol.history.earliest().history_id}/"
    assert client.get(url).status_code == 200

    assert not AuditEvent.objects.exists()


def test_it_logs_nothing_for_a_history_the_person_may_not_see(client, clinician_b, entry):
    client.force_login(clinician_b)

    assert client.get(f"/admin/patients/outcomeassessment/{entry.pk}/history/").status_code == 404
    url = f"/admin/patients/outcomeassessment/{entry.pk}/history/{entry.history.earliest().history_id}/"
    assert client.get(url).status_code == 404

    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("version", ["999999", "abc", "²"])
def test_it_logs_nothing_for_a_version_that_does_not_exist(client, clinician, entry, version):
    client.force_login(clinician)

    assert client.get(f"/admin/patients/outcomeassessment/{entry.pk}/history/{version}/").status_code == 404
    assert not AuditEvent.objects.exists()
