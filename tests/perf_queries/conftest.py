"""A clinic with a few rows of everything, so that every list page has more rows than its smallest page.

Built once for the module inside a transaction that is rolled back at the
end; each test runs in a savepoint within it (pytest-django's ``db``).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from django.utils import timezone

from clinic.models import Role
from patients.models import AdverseEvent, Export, OutcomeAssessment, OutcomePhoto, ScreeningOverride
from patients.treatments import ApplicationInput, ArmInput, record_treatment
from protocols.defaults import install_example_products, install_example_protocols
from tests.factories import ClinicFactory, IntakeFactory, PatientFactory, ScreeningFactory, staff

#: rows of each kind; the tests compare a page of 1 row with a page of ROWS rows
ROWS = 3


def _fill(clinic, clinician, clinic_admin) -> None:
    lots = install_example_products(clinic=clinic)
    lot = next(lot for lot in lots if lot.unusable_reason(timezone.localdate()) is None)
    version = install_example_protocols(clinic=clinic)["microneedling"]
    ended = timezone.now().replace(microsecond=0) - dt.timedelta(days=2)
    for number in range(ROWS):
        patient = PatientFactory(clinic=clinic)
        IntakeFactory(patient=patient, answers={"pregnant": False})
        # Screened (and overridden) the day before the procedure: a screening must precede treatment.
        screened = ended - dt.timedelta(days=1)
        started = ended - dt.timedelta(minutes=45)
        screening = ScreeningFactory(patient=patient, protocol_version=version, run_at=screened,
                                     planned_for=started.astimezone(ZoneInfo(clinic.time_zone)).date(),
                                     outcome="needs_override" if number == 0 else "clear")
        if number == 0:
            ScreeningOverride.objects.create(screening=screening, clinician=clinician, reason="Cleared by the GP.",
                                             created_at=screened + dt.timedelta(minutes=10))
        split = number == 1
        treatment = record_treatment(
            patient=patient, protocol_version=version, screening=screening, clinician=clinician,
            started_at=started, ended_at=ended, areas="Full face",
            arms=[ArmInput("Left", product=lot.product), ArmInput("Right", is_control=True)] if split else [],
            applications=[ApplicationInput(lot=lot, volume_ml=Decimal("2.5"), arm_label="Left" if split else "")],
        )
        arm = treatment.arms.first() if split else None
        for day in (0, 1):
            assessment = OutcomeAssessment.objects.create(treatment=treatment, arm=arm, time_point_day=day, erythema=2,
                                                          recorded_by=clinician)
        OutcomeAssessment.objects.create(treatment=treatment, time_point_day=1, source="patient", erythema=1)
        OutcomePhoto.objects.create(assessment=assessment, image=f"photos/{number}.jpg", opaque_name=f"{number}.jpg",
                                    content_type="image/jpeg", size_bytes=1000, uploaded_by=clinician)
        AdverseEvent.objects.create(treatment=treatment, arm=arm, kind="milia", severity="mild",
                                    onset_date=ended.date() + dt.timedelta(days=1), recorded_by=clinician)
        Export.objects.create(clinic=clinic, requested_by=clinic_admin, status="done", row_count=number)


@pytest.fixture(scope="module")
def busy_clinic(django_db_setup, django_db_blocker):
    """``ROWS`` patients with an intake, a screening (one overridden), a treatment (one split-face) with
    reminders, applications, outcomes, a photo and an adverse event; ``ROWS`` exports; and its clinic admin."""
    with django_db_blocker.unblock(), transaction.atomic():
        clinic = ClinicFactory(name="Busy Clinic", slug="busy")
        clinician = staff(Role.CLINICIAN, clinic, username="busy_clinician")
        clinic_admin = staff(Role.CLINIC_ADMIN, clinic, username="busy_admin")
        _fill(clinic, clinician, clinic_admin)
        yield clinic_admin
        transaction.set_rollback(True)
