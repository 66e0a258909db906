"""Demo patients for ``seed_demo``: one for each kind of screening result."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from clinic.models import Clinic
from patients.intake import record_intake
from patients.models import Patient, Screening
from patients.screenings import run_screening, versions_usable_by
from protocols.models import Procedure, ProtocolVersion


@dataclass(frozen=True)
class DemoPatient:
    reference: str
    given_name: str
    family_name: str
    date_of_birth: dt.date
    procedure: str
    answers_days_ago: dict[str, Any]  # booleans as is; ints are "this many days ago" dates


DEMO_PATIENTS: tuple[DemoPatient, ...] = (
    DemoPatient("DEMO-001", "Maya", "Okafor", dt.date(1991, 3, 14), Procedure.MICRONEEDLING,
                {"pregnant": True, "breastfeeding": False, "hsv_history": False}),
    DemoPatient("DEMO-002", "Lukas", "Brandt", dt.date(1998, 9, 2), Procedure.MICRONEEDLING,
                {"pregnant": False, "isotretinoin_last_dose": 60, "hsv_history": False}),
    DemoPatient("DEMO-003", "Sofia", "Marin", dt.date(1986, 1, 27), Procedure.MICRONEEDLING,
                {"pregnant": False, "breastfeeding": False, "hsv_history": False, "anticoagulant": False}),
    DemoPatient("DEMO-004", "Daniel", "Reyes", dt.date(1979, 6, 8), Procedure.FRACTIONAL_ABLATIVE,
                {"pregnant": False, "hsv_history": True}),
)


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
        patient, _ = Patient.objects.get_or_create(
            clinic=clinic, reference=spec.reference,
            defaults={
                "given_name": spec.given_name, "family_name": spec.family_name,
                "date_of_birth": spec.date_of_birth,
                "email": f"{spec.given_name}.{spec.family_name}@patient.example".lower().encode("ascii", "ignore").decode(),
                "reminder_consent": True, "consent_at": timezone.now(),
                "consent_source": Patient.ConsentSource.PAPER,
            },
        )
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
