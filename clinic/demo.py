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
    # Ofcom's range for drama (020 7946 0000–0999): fictional, never a real clinic's line.
    urgent_phone: str = "+44 20 7946 0000"

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
            "urgent_phone": spec.urgent_phone,
            "sender_name": f"{spec.name} aftercare",
            "quiet_hours_start": dt.time(21, 0),
            "quiet_hours_end": dt.time(8, 0),
            # The demo is for trying the product locally; real clinics keep two-factor on.
            "require_two_factor": False,
        },
    )
    if not clinic.urgent_phone:
        # A demo clinic seeded before clinics had an urgent number gets one; a number someone typed is kept.
        clinic.urgent_phone = spec.urgent_phone
        clinic.save(update_fields=["urgent_phone"])
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

def install_demo_content(summary: DemoSummary) -> None:
    """Everything a clinic would have after a month of use; each part skips what already exists."""
    from patients.demo import DEMO_PATIENTS, DEMO_TREATMENTS, install_demo_patients, install_demo_treatments
    from protocols.defaults import install_default_rules, install_example_products, install_example_protocols

    clinic, spec = summary.clinic, summary.spec
    clinician = get_user_model().objects.get(username=spec.username(Role.CLINICIAN))
    rules = install_default_rules()
    lots = install_example_products(clinic=clinic)
    versions = install_example_protocols(clinic=clinic)
    patients = install_demo_patients(
        clinic=clinic, versions=versions, clinician=clinician, patients=[spec.tagged(p) for p in DEMO_PATIENTS]
    )
    treated, assessments = install_demo_treatments(
        clinic=clinic, versions=versions, lots=lots, clinician=clinician,
        treatments=[spec.tagged(t) for t in DEMO_TREATMENTS],
    )
    summary.lines += [
        f"{rules} new default contraindication rules" if rules else "default contraindication rules present",
        f"{len(versions)} published example protocols, {len(lots)} product lots (one expired on purpose)",
        f"{len(patients)} screening demo patients (blocked, needs override, clear, HSV before ablative laser)",
        f"{treated} treated demo patients with timelines; {assessments} new outcome assessments",
    ]
