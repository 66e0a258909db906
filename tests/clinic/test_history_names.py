"""History pages name what was there and who changed it: "—" for an empty value (was "Deleted user
(pk=None)") and for nobody known, and "the patient, through their link" for what the patient changed
(was "None")."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinic.history import CORRECTED_BY_PATIENT
from patients.intake import record_intake
from patients.links import create_link
from patients.models import Intake, OutcomeAssessment, Patient
from patients.outcomes import record_self_report
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
    report._change_reason = CORRECTED_BY_PATIENT  # as the self-report service says it
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




def test_what_the_patient_sends_and_corrects_through_their_link_names_the_patient(client, clinician, clinic_a):
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a)
    link = create_link(patient=treatment.patient, purpose="self_report", treatment=treatment, time_point_day=3)
    report, _created = record_self_report(link=link, answers={"erythema": 2})
    again = create_link(patient=treatment.patient, purpose="self_report", treatment=treatment, time_point_day=3)
    record_self_report(link=again, answers={"erythema": 1})
    intake = record_intake(patient=treatment.patient, answers={}, recorded_by=None, source=Intake.Source.PATIENT_LINK)

    report_body = _changes(client, clinician, f"/admin/patients/outcomeassessment/{report.pk}/history/")
    assert report_body.count("the patient, through their link") == 2  # sent, then corrected
    assert intake.history.get().history_change_reason == "Answered by the patient through their intake link"


def test_a_change_to_a_patients_report_with_no_one_signed_in_and_no_patient_reason_is_not_the_patients(
    client, clinician, clinic_a
):
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a)
    report = OutcomeAssessment(treatment=treatment, time_point_day=3, source="patient", erythema=2)
    report._change_reason = "Sent by the patient through their link"
    report.save()
    report.erythema = 3
    report._change_reason = None
    report.save()  # a task, a command, a request whose user was not known when it saved

    body = _changes(client, clinician, f"/admin/patients/outcomeassessment/{report.pk}/history/")

    assert body.count("the patient, through their link") == 1  # the sending only
    assert "None" not in body.split('id="change-history"')[1].split("</table>")[0]


def test_an_edit_through_the_api_with_a_token_names_the_api_user_in_the_history(coordinator, clinic_a):
    patient = PatientFactory(clinic=clinic_a)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=coordinator).key}")

    response = api.patch(f"/api/v1/patients/{patient.pk}/", {"phone": "+44 20 7946 0000"}, format="json")

    assert response.status_code == 200
    latest = Patient.history.filter(id=patient.pk).first()
    assert (latest.history_type, latest.history_user) == ("~", coordinator)
