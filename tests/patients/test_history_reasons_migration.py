"""Migration 0015 gives the history rows the patient saved before the change reasons existed the reason the
patient-link services give now, so their history pages name the patient; rows it cannot tell are left."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from clinic.history import BY_PATIENT, CORRECTED_BY_PATIENT, INTAKE_BY_PATIENT, SENT_BY_PATIENT, UNSUBSCRIBED_BY_PATIENT
from patients.consent import renew_consent
from patients.intake import record_intake
from patients.links import create_link
from patients.models import Intake, OutcomeAssessment, Patient
from patients.outcomes import record_self_report
from patients.reminders import unsubscribe
from tests.factories import PatientFactory, TreatmentFactory

# The schema editor migrates outside a test's transaction (SQLite refuses one inside it).
pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("patients", "0014_reminder_visit_moved")]
BACKFILL = [("patients", "0015_history_names_the_patient_of_old_rows")]


def _migrate(targets: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)


def _migrate_to_the_latest() -> None:
    """Forward through the backfill and whatever later migrations depend on it (the pages need their tables)."""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture
def before_the_backfill(transactional_db) -> Iterator[None]:
    # The test writes its rows through today's services, so on today's schema (a later migration may add a
    # column they write); ``_backfill`` then takes them back to before 0015, which later migrations' backwards
    # steps keep, and forward again.
    yield
    _migrate_to_the_latest()  # the next test starts from the whole schema


def _backfill() -> None:
    _migrate(BEFORE)
    _migrate_to_the_latest()


def _saved_before_the_reasons(history) -> None:  # noqa: ANN001 - a historical queryset
    """What the services saved before they gave a reason: no user, no reason (NULL or empty, both seen)."""
    history.update(history_change_reason=None)


def _reasons(model, pk: int) -> list[str | None]:  # noqa: ANN001 - a model class
    return [row.history_change_reason for row in model.history.filter(id=pk).order_by("history_date", "history_id")]


def _self_report(treatment, *, day: int, erythema: int) -> OutcomeAssessment:  # noqa: ANN001
    link = create_link(patient=treatment.patient, purpose="self_report", treatment=treatment, time_point_day=day)
    report, _created = record_self_report(link=link, answers={"erythema": erythema})
    return report


def test_it_names_the_patient_on_their_old_reports_intakes_and_unsubscribing(before_the_backfill, client, clinician, clinic_a):
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a)
    patient = treatment.patient
    report = _self_report(treatment, day=3, erythema=2)
    _self_report(treatment, day=3, erythema=1)  # a correction: it had its reason already
    _saved_before_the_reasons(OutcomeAssessment.history.filter(id=report.pk, history_type="+"))
    intake = record_intake(patient=patient, answers={}, recorded_by=None, source=Intake.Source.PATIENT_LINK)
    Intake.history.filter(id=intake.pk).update(history_change_reason="")
    unsubscribe(patient=patient)
    _saved_before_the_reasons(Patient.history.filter(id=patient.pk))

    _backfill()

    assert _reasons(OutcomeAssessment, report.pk) == [SENT_BY_PATIENT, CORRECTED_BY_PATIENT]
    assert _reasons(Intake, intake.pk) == [INTAKE_BY_PATIENT]  # intakes have no history page of their own
    assert _reasons(Patient, patient.pk) == [None, UNSUBSCRIBED_BY_PATIENT]  # created by a factory, then the opt-out
    client.force_login(clinician)
    for url, named in (
        (f"/admin/patients/outcomeassessment/{report.pk}/history/", 2),  # sent, then corrected
        (f"/admin/patients/patient/{patient.pk}/history/", 1),
    ):
        response = client.get(url)
        assert response.status_code == 200
        assert response.content.decode().count(BY_PATIENT) == named, url


def test_it_leaves_what_the_rows_do_not_prove_the_patient_did(before_the_backfill, clinician, clinic_a):
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a)
    later_changed = _self_report(treatment, day=3, erythema=2)
    later_changed.erythema = 3
    later_changed.save()  # a task or a command, say: nothing says it was the patient
    signed_in = _self_report(treatment, day=7, erythema=1)
    OutcomeAssessment.history.filter(id=signed_in.pk).update(history_user=clinician)
    demo = OutcomeAssessment.objects.create(treatment=treatment, time_point_day=14, source="patient", erythema=1)
    by_clinician = OutcomeAssessment.objects.create(treatment=treatment, time_point_day=3, erythema=1)
    staff_intake = record_intake(patient=treatment.patient, answers={}, recorded_by=clinician)  # the demo seed: no request
    other_reason = record_intake(patient=treatment.patient, answers={}, recorded_by=None, source=Intake.Source.PATIENT_LINK)
    Intake.history.filter(id=other_reason.pk).update(history_change_reason="Imported")
    created_opted_out = PatientFactory(clinic=treatment.clinic, opted_out_at=treatment.ended_at)
    created_opted_out.phone = "+44 20 7946 0000"
    created_opted_out.save()
    history_begun_later = PatientFactory(clinic=clinic_a)
    unsubscribe(patient=history_begun_later)
    Patient.history.filter(id=history_begun_later.pk, history_type="+").delete()  # no row says it was empty before
    _saved_before_the_reasons(Patient.history.filter(id=history_begun_later.pk))
    _saved_before_the_reasons(OutcomeAssessment.history.filter(id__in=[later_changed.pk, signed_in.pk]))

    _backfill()

    assert _reasons(OutcomeAssessment, later_changed.pk) == [SENT_BY_PATIENT, None]
    assert _reasons(OutcomeAssessment, signed_in.pk) == [None]
    assert _reasons(OutcomeAssessment, demo.pk) == [None]  # the demo seed's: no link
    assert _reasons(OutcomeAssessment, by_clinician.pk) == [None]
    assert _reasons(Intake, staff_intake.pk) == [None]
    assert _reasons(Intake, other_reason.pk) == ["Imported"]
    assert _reasons(Patient, created_opted_out.pk) == [None, None]
    assert _reasons(Patient, history_begun_later.pk) == [None]


def test_it_names_each_unsubscribing_of_a_patient_who_renewed_consent_in_between(before_the_backfill, clinician, clinic_a):
    patient = PatientFactory(clinic=clinic_a)
    unsubscribe(patient=patient)
    renew_consent(patient=patient, consent_at=patient.opted_out_at, consent_source="verbal", recorded_by=clinician)
    patient.refresh_from_db()
    unsubscribe(patient=patient)
    _saved_before_the_reasons(Patient.history.filter(id=patient.pk, history_user__isnull=True))

    _backfill()

    assert _reasons(Patient, patient.pk) == [None, UNSUBSCRIBED_BY_PATIENT, None, UNSUBSCRIBED_BY_PATIENT]


def test_it_migrates_back_without_undoing_the_reasons(before_the_backfill):
    patient = PatientFactory()
    unsubscribe(patient=patient)
    _saved_before_the_reasons(Patient.history.filter(id=patient.pk))
    _migrate(BEFORE)
    _migrate(BACKFILL)

    _migrate(BEFORE)

    assert _reasons(Patient, patient.pk) == [None, UNSUBSCRIBED_BY_PATIENT]
