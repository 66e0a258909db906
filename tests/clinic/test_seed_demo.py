"""seed_demo is idempotent and never uses a fixed password."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from clinic.models import Clinic, Membership, Role

pytestmark = pytest.mark.django_db


def run_seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_it_creates_one_user_per_role_with_printed_generated_passwords():
    output = run_seed()
    passwords = dict(re.findall(r"(demo_\w+)\s+password: (\S+)", output))
    assert set(passwords) == {"demo_admin", "demo_clinician", "demo_coordinator", "demo_auditor"}
    assert len(set(passwords.values())) == 4
    User = get_user_model()  # noqa: N806
    for username, password in passwords.items():
        assert User.objects.get(username=username).check_password(password)
    roles = set(Membership.objects.filter(clinic__slug="demo").values_list("role", flat=True))
    assert roles == set(Role.values)


def test_it_generates_different_passwords_on_every_fresh_install():
    from django.db import transaction

    with transaction.atomic():  # a fresh install, then rolled back: the database is empty again
        first = re.findall(r"password: (\S+)", run_seed())
        transaction.set_rollback(True)
    assert not get_user_model().objects.filter(username__startswith="demo_").exists()
    second = re.findall(r"password: (\S+)", run_seed())
    assert first and second and set(first).isdisjoint(second)


def test_it_creates_nothing_twice():
    run_seed()
    counts = {model: model.objects.count() for model in _seeded_models()}
    output = run_seed()
    assert "password unchanged" in output
    assert {model: model.objects.count() for model in _seeded_models()} == counts
    assert Clinic.objects.filter(slug="demo").count() == 1


def _seeded_models():
    from django.apps import apps

    return [m for m in apps.get_models() if m._meta.app_label in {"clinic", "protocols", "patients", "auth"}
            and not m._meta.label.endswith("AuditEvent")]


def test_it_seeds_a_clinic_with_a_month_of_clinical_history():
    from patients.models import OutcomeAssessment, Patient, Reminder, Screening, Treatment
    from protocols.models import ProtocolVersion

    run_seed()
    clinic = Clinic.objects.get(slug="demo")
    assert ProtocolVersion.objects.filter(protocol__clinic=clinic, status="published").count() == 3
    outcomes = set(Screening.objects.filter(patient__clinic=clinic).values_list("outcome", flat=True))
    assert {"blocked", "needs_override", "clear"} <= outcomes
    treatments = Treatment.objects.filter(clinic=clinic)
    assert treatments.count() == 8
    assert treatments.filter(arms__isnull=False).distinct().count() == 2  # split-face
    for treatment in treatments.select_related("screening__intake"):
        # Answered and screened before the procedure, as the gate requires.
        assert treatment.screening.intake.answered_at <= treatment.screening.run_at < treatment.started_at
    assert Reminder.objects.filter(treatment__clinic=clinic, status="scheduled").exists()
    assert OutcomeAssessment.objects.filter(treatment__clinic=clinic).count() > 30
    assert Patient.objects.filter(clinic=clinic).count() == 12
    assert Patient.objects.filter(clinic=clinic, given_name="Chloé", email="chloe.martin@patient.example").exists()
