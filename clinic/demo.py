"""The demo clinic that `seed_demo` builds, stage by stage, each stage idempotent."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model

from clinic.models import Clinic, Membership, Role

DEMO_CLINIC_SLUG = "demo"
DEMO_STAFF: list[tuple[str, str]] = [
    ("demo_admin", Role.CLINIC_ADMIN),
    ("demo_clinician", Role.CLINICIAN),
    ("demo_coordinator", Role.COORDINATOR),
    ("demo_auditor", Role.AUDITOR),
]


@dataclass
class DemoSummary:
    clinic: Clinic
    new_users: set[str] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)


def install_demo_clinic() -> DemoSummary:
    clinic, _ = Clinic.objects.get_or_create(
        slug=DEMO_CLINIC_SLUG,
        defaults={
            "name": "Demo Skin Clinic",
            "time_zone": "Europe/London",
            "contact_email": "frontdesk@demo-clinic.example",
            "sender_name": "Demo Skin Clinic aftercare",
            "quiet_hours_start": dt.time(21, 0),
            "quiet_hours_end": dt.time(8, 0),
            # The demo is for trying the product locally; real clinics keep two-factor on.
            "require_two_factor": False,
        },
    )
    summary = DemoSummary(clinic=clinic)
    _install_staff(summary)
    return summary


def _install_staff(summary: DemoSummary) -> None:
    User = get_user_model()  # noqa: N806
    for username, role in DEMO_STAFF:
        user, created = User.objects.get_or_create(
            username=username,
            defaults={"email": f"{username}@demo-clinic.example", "is_staff": True, "first_name": role.label},
        )
        if created:
            user.set_unusable_password()  # the command sets a generated one and prints it
            user.save()
            summary.new_users.add(username)
        Membership.objects.get_or_create(user=user, clinic=summary.clinic, defaults={"role": role})


# --- clinical content: rules, products, protocols, patients, treatments, outcomes -----------------

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


def _demo_treatments() -> tuple[DemoTreatment, ...]:
    from protocols.models import Procedure

    mn, nafl, afl = Procedure.MICRONEEDLING, Procedure.FRACTIONAL_NONABLATIVE, Procedure.FRACTIONAL_ABLATIVE
    return (
        DemoTreatment("DEMO-101", "Amara", "Nwosu", dt.date(1988, 4, 2), mn, 3, 5),
        DemoTreatment("DEMO-102", "Elena", "Petrova", dt.date(1975, 11, 19), mn, 8, 2),
        DemoTreatment("DEMO-103", "Hiro", "Tanaka", dt.date(1992, 7, 30), mn, 15, 3),
        DemoTreatment("DEMO-104", "Grace", "Lindqvist", dt.date(1983, 2, 11), mn, 29, 1, split_face=True),
        DemoTreatment("DEMO-105", "Omar", "Haddad", dt.date(1990, 9, 5), nafl, 10, 4),
        DemoTreatment("DEMO-106", "Chloé", "Martin", dt.date(1969, 12, 24), nafl, 21, 2),
        DemoTreatment("DEMO-107", "Ines", "Duarte", dt.date(1979, 5, 16), afl, 12, 2),
        DemoTreatment("DEMO-108", "Priya", "Raman", dt.date(1995, 3, 8), mn, 6, 4, split_face=True),
    )


CLEAR_ANSWERS = {"pregnant": False, "breastfeeding": False, "hsv_history": False, "anticoagulant": False,
                 "active_infection": False, "keloid_history": False}


def install_demo_content(summary: DemoSummary) -> None:
    """Everything a clinic would have after a month of use; each part skips what already exists."""
    from patients.demo import install_demo_patients
    from protocols.defaults import install_default_rules, install_example_products, install_example_protocols

    clinic = summary.clinic
    clinician = get_user_model().objects.get(username="demo_clinician")
    rules = install_default_rules()
    lots = install_example_products(clinic=clinic)
    versions = install_example_protocols(clinic=clinic)
    patients = install_demo_patients(clinic=clinic, versions=versions, clinician=clinician)
    treated, assessments = _install_demo_treatments(clinic=clinic, versions=versions, lots=lots, clinician=clinician)
    summary.lines += [
        f"{rules} new default contraindication rules" if rules else "default contraindication rules present",
        f"{len(versions)} published example protocols, {len(lots)} product lots (one expired on purpose)",
        f"{len(patients)} screening demo patients (blocked, needs override, clear, HSV before ablative laser)",
        f"{treated} treated demo patients with timelines; {assessments} new outcome assessments",
    ]


def _install_demo_treatments(*, clinic: Clinic, versions: dict, lots: list, clinician) -> tuple[int, int]:
    from decimal import Decimal

    from django.utils import timezone

    from patients.demo_outcomes import install_demo_outcomes
    from patients.intake import record_intake
    from patients.models import Patient, Treatment
    from patients.screenings import run_screening
    from patients.treatments import ApplicationInput, ArmInput, record_treatment

    today = timezone.localdate()
    lot = next(lot for lot in lots if lot.unusable_reason(today) is None and lot.product.source == "human")
    treated = created = 0
    for spec in _demo_treatments():
        version = versions[str(spec.procedure)]
        patient, _ = Patient.objects.get_or_create(
            clinic=clinic, reference=spec.reference,
            defaults={
                "given_name": spec.given_name, "family_name": spec.family_name, "date_of_birth": spec.date_of_birth,
                "email": f"{spec.given_name.lower()}.{spec.family_name.lower()}@patient.example",
                "fitzpatrick_type": spec.fitzpatrick, "reminder_consent": True, "consent_at": timezone.now(),
                "consent_source": Patient.ConsentSource.PAPER,
            },
        )
        treatment = Treatment.objects.filter(patient=patient).first()
        if treatment is None:
            if not patient.intakes.exists():
                record_intake(patient=patient, answers=CLEAR_ANSWERS, recorded_by=clinician)
            ended = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(days=spec.days_ago)
            screening = run_screening(patient=patient, protocol_version=version, planned_for=ended.date(), run_by=clinician)
            arms = [ArmInput("Left", product=lot.product), ArmInput("Right", is_control=True,
                                                                   control_description="Saline only")] if spec.split_face else []
            treatment = record_treatment(
                patient=patient, protocol_version=version, screening=screening, clinician=clinician,
                started_at=ended - dt.timedelta(minutes=45), ended_at=ended, areas="Full face",
                device="Demo device", needle_depth_mm=Decimal("1.0") if spec.procedure == "microneedling" else None,
                passes=2, applications=[ApplicationInput(lot=lot, volume_ml=Decimal("2.5"), minutes_after_procedure=5,
                                                         arm_label="Left" if spec.split_face else "")],
                arms=arms,
            )
        treated += 1
        created += install_demo_outcomes(treatment=treatment, clinician=clinician)
    return treated, created
