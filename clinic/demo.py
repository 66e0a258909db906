"""The demo clinic that `seed_demo` builds, stage by stage, each stage idempotent.

The builders take a ``DemoClinicSpec`` so that a second, different clinic can be
built beside the demo one (the isolation tests in tests/security seed two).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model

from clinic.models import Clinic, Membership, Role

_STAFF_ROLES: tuple[tuple[str, str], ...] = (
    ("admin", Role.CLINIC_ADMIN),
    ("clinician", Role.CLINICIAN),
    ("coordinator", Role.COORDINATOR),
    ("auditor", Role.AUDITOR),
)


@dataclass(frozen=True)
class DemoClinicSpec:
    """Who a demo clinic is: its name, its staff's usernames, and a tag that marks its patients.

    With a ``tag``, every patient's reference, family name and email carry it
    (``ZEBQUILL-101``, ``Nwosu-Zebquill``), so one clinic's people can be told
    from another's built from the same list.
    """

    slug: str
    name: str
    staff_prefix: str
    time_zone: str = "Europe/London"
    tag: str = ""

    @property
    def domain(self) -> str:
        return f"{self.slug}-clinic.example"

    @property
    def staff(self) -> list[tuple[str, str]]:
        return [(f"{self.staff_prefix}_{suffix}", role) for suffix, role in _STAFF_ROLES]

    def username(self, role: str) -> str:
        return next(username for username, staff_role in self.staff if staff_role == role)

    def tagged(self, person: Any) -> Any:
        """A demo patient spec (any dataclass with ``reference`` and ``family_name``) carrying this clinic's tag."""
        if not self.tag:
            return person
        return dataclasses.replace(
            person, reference=person.reference.replace("DEMO", self.tag.upper(), 1),
            family_name=f"{person.family_name}-{self.tag}",
        )


DEMO_CLINIC = DemoClinicSpec(slug="demo", name="Demo Skin Clinic", staff_prefix="demo")
DEMO_CLINIC_SLUG = DEMO_CLINIC.slug
DEMO_STAFF: list[tuple[str, str]] = DEMO_CLINIC.staff


@dataclass
class DemoSummary:
    clinic: Clinic
    spec: DemoClinicSpec = DEMO_CLINIC
    new_users: set[str] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)


def install_demo_clinic(spec: DemoClinicSpec = DEMO_CLINIC) -> DemoSummary:
    clinic, _ = Clinic.objects.get_or_create(
        slug=spec.slug,
        defaults={
            "name": spec.name,
            "time_zone": spec.time_zone,
            "contact_email": f"frontdesk@{spec.domain}",
            "sender_name": f"{spec.name} aftercare",
            "quiet_hours_start": dt.time(21, 0),
            "quiet_hours_end": dt.time(8, 0),
            # The demo is for trying the product locally; real clinics keep two-factor on.
            "require_two_factor": False,
        },
    )
    summary = DemoSummary(clinic=clinic, spec=spec)
    _install_staff(summary)
    return summary


def _install_staff(summary: DemoSummary) -> None:
    User = get_user_model()  # noqa: N806
    for username, role in summary.spec.staff:
        user, created = User.objects.get_or_create(
            username=username,
            defaults={"email": f"{username}@{summary.spec.domain}", "is_staff": True, "first_name": role.label},
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
    from patients.demo import DEMO_PATIENTS, install_demo_patients
    from protocols.defaults import install_default_rules, install_example_products, install_example_protocols

    clinic, spec = summary.clinic, summary.spec
    clinician = get_user_model().objects.get(username=spec.username(Role.CLINICIAN))
    rules = install_default_rules()
    lots = install_example_products(clinic=clinic)
    versions = install_example_protocols(clinic=clinic)
    patients = install_demo_patients(
        clinic=clinic, versions=versions, clinician=clinician, patients=[spec.tagged(p) for p in DEMO_PATIENTS]
    )
    treated, assessments = _install_demo_treatments(
        clinic=clinic, versions=versions, lots=lots, clinician=clinician,
        treatments=[spec.tagged(t) for t in _demo_treatments()],
    )
    summary.lines += [
        f"{rules} new default contraindication rules" if rules else "default contraindication rules present",
        f"{len(versions)} published example protocols, {len(lots)} product lots (one expired on purpose)",
        f"{len(patients)} screening demo patients (blocked, needs override, clear, HSV before ablative laser)",
        f"{treated} treated demo patients with timelines; {assessments} new outcome assessments",
    ]


def _install_demo_treatments(
    *, clinic: Clinic, versions: dict, lots: list, clinician: Any, treatments: list[DemoTreatment]
) -> tuple[int, int]:
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
    for spec in treatments:
        version = versions[str(spec.procedure)]
        patient, _ = Patient.objects.get_or_create(
            clinic=clinic, reference=spec.reference,
            defaults={
                "given_name": spec.given_name, "family_name": spec.family_name, "date_of_birth": spec.date_of_birth,
                "email": f"{spec.given_name}.{spec.family_name}@patient.example".lower().encode("ascii", "ignore").decode(),
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
