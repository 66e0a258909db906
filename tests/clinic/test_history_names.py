"""History pages name what was there and who changed it: "—" for an empty value (was "Deleted user
(pk=None)") and for nobody known, and "the patient, through their link" for what the patient changed
(was "None")."""

from __future__ import annotations

import pytest
from django.utils import timezone

from patients.models import OutcomeAssessment
from patients.reminders import unsubscribe
from tests.factories import PatientFactory, TreatmentFactory

pytestmark = pytest.mark.django_db


def _changes(client, user, url: str) -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_a_flag_review_cleared_by_the_patients_correction_reads_dash_and_names_the_patient(
    client, clinician, clinic_a
):
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a)
    report = OutcomeAssessment(treatment=treatment, time_point_day=3, source="patient", problem_flagged=True)
    report._history_user = clinician
    report.save()
    report.flag_reviewed_by, report.flag_reviewed_at = clinician, timezone.now()
    report._history_user = clinician
    report.save()
    del report._history_user
    report.flag_reviewed_by, report.flag_reviewed_at = None, None  # the patient corrected the report
    report.save()

    body = _changes(client, clinician, f"/admin/patients/outcomeassessment/{report.pk}/history/")

    assert "Deleted user" not in body and "pk=None" not in body
    assert "the patient, through their link" in body
    assert "&nbsp;&rarr;&nbsp;&nbsp;—" in body  # reviewed by someone → nobody


def test_the_patient_unsubscribing_is_named_as_the_patient(client, clinician, clinic_a):
    patient = PatientFactory(clinic=clinic_a)
    unsubscribe(patient=patient)
    body = _changes(client, clinician, f"/admin/patients/patient/{patient.pk}/history/")
    assert "the patient, through their link" in body
    assert ">None<" not in body.replace(" ", "").replace("\n", "")


def test_a_change_by_nobody_known_reads_dash(client, clinician, clinic_a):
    patient = PatientFactory(clinic=clinic_a, given_name="Ana")
    patient.given_name = "Anna"
    patient.save()  # a management command, say: no request, no reason
    body = _changes(client, clinician, f"/admin/patients/patient/{patient.pk}/history/")
    assert "None" not in body.split('id="change-history"')[1].split("</table>")[0]
