"""Demo patients for ``seed_demo``: one for each kind of screening result, and patients treated over the past month."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils import timezone

from clinic.models import Clinic
from patients.demo_outcomes import install_demo_outcomes
from patients.intake import record_intake
from patients.models import Patient, Screening, Treatment
from patients.screenings import procedure_day, run_screening, versions_usable_by
from patients.treatments import ApplicationInput, ArmInput, record_treatment
from protocols.facts import FACTS, FactType
from protocols.models import ExosomeProduct, Procedure, ProductLot, ProtocolVersion


@dataclass(frozen=True)
class DemoPatient:
    reference: str
    given_name: str
    family_name: str
    date_of_birth: dt.date
    procedure: str
    answers_days_ago: dict[str, Any]  # booleans as is; ints are "this many days ago" dates


#: A complete intake that finds nothing: every yes/no question "no" and skin type II (no default rule reads
#: types I–III); dates stay empty ("never"). A screening reports unanswered questions, so demo intakes answer all.
CLEAR_ANSWERS: dict[str, Any] = {fact.code: False for fact in FACTS if fact.type == FactType.BOOLEAN} | {
    "fitzpatrick_type": "II"
}

DEMO_PATIENTS: tuple[DemoPatient, ...] = (
    DemoPatient("DEMO-001", "Maya", "Okafor", dt.date(1991, 3, 14), Procedure.MICRONEEDLING,
                CLEAR_ANSWERS | {"pregnant": True}),
    DemoPatient("DEMO-002", "Lukas", "Brandt", dt.date(1998, 9, 2), Procedure.MICRONEEDLING,
                CLEAR_ANSWERS | {"isotretinoin_last_dose": 60}),
    DemoPatient("DEMO-003", "Sofia", "Marin", dt.date(1986, 1, 27), Procedure.MICRONEEDLING, CLEAR_ANSWERS),
    DemoPatient("DEMO-004", "Daniel", "Reyes", dt.date(1979, 6, 8), Procedure.FRACTIONAL_ABLATIVE,
                CLEAR_ANSWERS | {"hsv_history": True}),
)


def _demo_patient(*, clinic: Clinic, spec: DemoPatient | DemoTreatment, **extra: Any) -> Patient:
    """The patient of ``spec`` in ``clinic``, created once, with paper consent to reminders."""
    # Accents folded, not dropped: Chloé → chloe, not chlo.
    local = unicodedata.normalize("NFKD", f"{spec.given_name}.{spec.family_name}").encode("ascii", "ignore").decode()
    email = f"{local}@patient.example".lower()
    patient, _ = Patient.objects.get_or_create(
        clinic=clinic, reference=spec.reference,
        defaults={
            "given_name": spec.given_name, "family_name": spec.family_name, "date_of_birth": spec.date_of_birth,
            "email": email, "reminder_consent": True, "consent_at": timezone.now(),
            "consent_source": Patient.ConsentSource.PAPER, **extra,
        },
    )
    return patient


def _version_for(procedure: str, versions: dict[str, ProtocolVersion]) -> ProtocolVersion | None:
    # Keys may be procedure codes or any label; match on the version's procedure.
    if procedure in versions:
        return versions[procedure]
    return next((v for v in versions.values() if v.procedure == procedure), None)


def _answers(spec: DemoPatient, today: dt.date) -> dict[str, Any]:
    return {
        code: (today - dt.timedelta(days=value)).isoformat() if isinstance(value, int) and not isinstance(value, bool)
        else value
        for code, value in spec.answers_days_ago.items()
    }


def install_demo_patients(
    *, clinic: Clinic, versions: dict[str, ProtocolVersion], clinician: Any, patients: Iterable[DemoPatient] = DEMO_PATIENTS
) -> list[Patient]:
    """Create (once) four demo patients, each with an intake and a screening. Safe to run again.

    ``versions`` maps any key (e.g. the procedure code) to a published
    version; a patient whose procedure has no usable version gets no screening.
    ``patients`` replaces the four (``DemoClinicSpec.tagged`` marks them per clinic).
    """
    today = timezone.localdate()
    installed: list[Patient] = []
    usable = versions_usable_by(clinic)
    for spec in patients:
        patient = _demo_patient(clinic=clinic, spec=spec)
        installed.append(patient)
        if not patient.intakes.exists():
            record_intake(patient=patient, answers=_answers(spec, today), recorded_by=clinician)
        version = _version_for(spec.procedure, versions)
        if version is None or not usable.filter(pk=version.pk).exists():
            continue
        if not Screening.objects.filter(patient=patient, protocol_version=version).exists():
            run_screening(
                patient=patient, protocol_version=version, planned_for=today + dt.timedelta(days=7), run_by=clinician
            )
    return installed


# --- patients treated over the past month: timelines, outcomes, split-face arms ------------------

@dataclass(frozen=True)
class DemoTreatment:
    """A demo patient who was treated ``days_ago`` days ago, so the timeline and outcomes have a history."""

    reference: str
    given_name: str
    family_name: str
    date_of_birth: dt.date
    procedure: str
    days_ago: int
    fitzpatrick: int
    split_face: bool = False


_MN, _NAFL, _AFL = Procedure.MICRONEEDLING, Procedure.FRACTIONAL_NONABLATIVE, Procedure.FRACTIONAL_ABLATIVE
DEMO_TREATMENTS: tuple[DemoTreatment, ...] = (
    DemoTreatment("DEMO-101", "Amara", "Nwosu", dt.date(1988, 4, 2), _MN, 3, 5),
    DemoTreatment("DEMO-102", "Elena", "Petrova", dt.date(1975, 11, 19), _MN, 8, 2),
    DemoTreatment("DEMO-103", "Hiro", "Tanaka", dt.date(1992, 7, 30), _MN, 15, 3),
    DemoTreatment("DEMO-104", "Grace", "Lindqvist", dt.date(1983, 2, 11), _MN, 29, 1, split_face=True),
    DemoTreatment("DEMO-105", "Omar", "Haddad", dt.date(1990, 9, 5), _NAFL, 10, 4),
    DemoTreatment("DEMO-106", "Chloé", "Martin", dt.date(1969, 12, 24), _NAFL, 21, 2),
    DemoTreatment("DEMO-107", "Ines", "Duarte", dt.date(1979, 5, 16), _AFL, 12, 2),
    DemoTreatment("DEMO-108", "Priya", "Raman", dt.date(1995, 3, 8), _MN, 6, 4, split_face=True),
)
#: Treated patients' skin type comes from their record (``DemoTreatment.fitzpatrick``), not the intake.
TREATED_ANSWERS: dict[str, Any] = {code: value for code, value in CLEAR_ANSWERS.items() if code != "fitzpatrick_type"}


def install_demo_treatments(
    *, clinic: Clinic, versions: dict[str, ProtocolVersion], lots: list[ProductLot], clinician: Any,
    treatments: Iterable[DemoTreatment] = DEMO_TREATMENTS,
) -> tuple[int, int]:
    """Screen (clear) and treat each patient once, with an in-clinic exosome lot, then add their outcomes.

    Returns (treated patients, new outcome assessments). Safe to run again.
    """
    today = timezone.localdate()
    lot = next(lot for lot in lots if lot.unusable_reason(today) is None and lot.product.source == ExosomeProduct.Source.HUMAN)
    treated = created = 0
    for spec in treatments:
        patient = _demo_patient(clinic=clinic, spec=spec, fitzpatrick_type=spec.fitzpatrick)
        treatment = Treatment.objects.filter(patient=patient).first() or _treat(
            patient=patient, spec=spec, version=versions[str(spec.procedure)], lot=lot, clinician=clinician
        )
        treated += 1
        created += install_demo_outcomes(treatment=treatment, clinician=clinician)
    return treated, created


def _treat(*, patient: Patient, spec: DemoTreatment, version: ProtocolVersion, lot: ProductLot, clinician: Any) -> Treatment:
    ended = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(days=spec.days_ago)
    started = ended - dt.timedelta(minutes=45)
    # Answered and screened the day before the procedure: a screening must precede treatment.
    screened = started - dt.timedelta(days=1)
    if not patient.intakes.exists():
        record_intake(patient=patient, answers=TREATED_ANSWERS, recorded_by=clinician, answered_at=screened)
    # For the day the procedure starts on the clinic's clock, which a treatment's screening must name.
    screening = run_screening(
        patient=patient, protocol_version=version, planned_for=procedure_day(started, patient=patient),
        run_by=clinician, run_at=screened,
    )
    arms = [ArmInput("Left", product=lot.product),
            ArmInput("Right", is_control=True, control_description="Saline only")] if spec.split_face else []
    return record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=started, ended_at=ended, areas="Full face", device="Demo device",
        needle_depth_mm=Decimal("1.0") if spec.procedure == Procedure.MICRONEEDLING else None, passes=2,
        applications=[ApplicationInput(lot=lot, volume_ml=Decimal("2.5"), minutes_after_procedure=5,
                                       arm_label="Left" if spec.split_face else "")],
        arms=arms,
    )
