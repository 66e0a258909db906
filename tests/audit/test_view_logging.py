"""Admin classes that opt in with ``log_views = True`` log every look at a change page."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.http import Http404

from clinic.admin_base import ClinicScopedAdmin
from clinic.audit import verify_chain
from clinic.models import AuditEvent
from patients.models import Patient
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


class LoggedPatientAdmin(ClinicScopedAdmin):
    log_views = True


class QuietPatientAdmin(ClinicScopedAdmin):
    pass


def _get(rf, user, patient):  # noqa: ANN001, ANN202
    request = rf.get(f"/admin/patients/patient/{patient.pk}/change/")
    request.user = user
    request.request_id = "req-view-0001"
    return request


def test_it_logs_who_viewed_which_patient_in_which_clinic(rf, clinician, clinic_a):
    patient = PatientFactory(clinic=clinic_a)

    response = LoggedPatientAdmin(Patient, admin.site).change_view(_get(rf, clinician, patient), str(patient.pk))

    assert response.status_code == 200
    event = AuditEvent.objects.get(action="view")
    assert (event.actor, event.clinic, event.object_type, event.object_id) == (
        clinician, clinic_a, "patients.patient", str(patient.pk)
    )
    assert event.request_id == "req-view-0001"
    assert verify_chain().intact


def test_it_logs_nothing_unless_the_admin_opts_in(rf, clinician, clinic_a):
    patient = PatientFactory(clinic=clinic_a)

    QuietPatientAdmin(Patient, admin.site).change_view(_get(rf, clinician, patient), str(patient.pk))

    assert not AuditEvent.objects.exists()


def test_it_logs_nothing_for_a_record_the_person_may_not_see(rf, clinician_b, clinic_a):
    patient = PatientFactory(clinic=clinic_a)

    with pytest.raises(Http404):
        LoggedPatientAdmin(Patient, admin.site).change_view(_get(rf, clinician_b, patient), str(patient.pk))

    assert not AuditEvent.objects.exists()
