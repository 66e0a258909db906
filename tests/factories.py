"""factory_boy factories for every model the tests build."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from clinic.models import Clinic, Membership, Role
from patients.models import Intake, Patient, Reminder, Screening, Treatment
from protocols.facts import FACTS, FactType
from protocols.models import (
    ContraindicationRule,
    ExosomeProduct,
    ProductLot,
    Protocol,
    ProtocolStep,
    ProtocolVersion,
    Severity,
    StepKind,
)

PASSWORD = "correct-horse-battery-staple"


class ClinicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Clinic
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Clinic {n}")
    slug = factory.Sequence(lambda n: f"clinic-{n}")
    time_zone = "Europe/London"
    contact_email = factory.LazyAttribute(lambda o: f"desk@{o.slug}.example")
    sender_name = factory.LazyAttribute(lambda o: o.name)
    require_two_factor = False


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@staff.example")
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # noqa: N805
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    clinic = factory.SubFactory(ClinicFactory)
    role = Role.CLINICIAN


def staff(role: str, clinic: Clinic, **user_kwargs: object):  # noqa: ANN201 - a User
    """A staff user with ``role`` in ``clinic``."""
    user = UserFactory(**user_kwargs)
    MembershipFactory(user=user, clinic=clinic, role=role)
    return user


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExosomeProduct

    clinic = factory.SubFactory(ClinicFactory)
    name = factory.Sequence(lambda n: f"Exosome serum {n}")
    manufacturer = "Acme Biologics"
    source = ExosomeProduct.Source.PLANT
    cell_type = "plant"


class LotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProductLot

    product = factory.SubFactory(ProductFactory)
    clinic = factory.LazyAttribute(lambda o: o.product.clinic)
    lot_number = factory.Sequence(lambda n: f"LOT{n:05d}")
    # Before any moment a test freezes the clock at: a lot is not usable before it was received.
    received_date = dt.date(2025, 1, 1)
    expiry_date = factory.LazyFunction(lambda: timezone.now().date() + dt.timedelta(days=365))


class RuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContraindicationRule

    clinic = None
    code = factory.Sequence(lambda n: f"rule-{n}")
    fact = "pregnant"
    severity = Severity.ABSOLUTE
    message = "Do not treat."


class ProtocolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Protocol

    clinic = factory.SubFactory(ClinicFactory)
    name = factory.Sequence(lambda n: f"Microneedling + exosome {n}")
    procedure = "microneedling"


class VersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProtocolVersion
        skip_postgeneration_save = True

    protocol = factory.SubFactory(ProtocolFactory)
    number = factory.Sequence(lambda n: n + 1)
    status = ProtocolVersion.Status.PUBLISHED

    @factory.post_generation
    def added_rules(obj, create, extracted, **kwargs):  # noqa: N805
        if create and extracted:
            _while_draft(obj, lambda: obj.added_rules.add(*extracted))

    @factory.post_generation
    def removed_rules(obj, create, extracted, **kwargs):  # noqa: N805
        if create and extracted:
            _while_draft(obj, lambda: obj.removed_rules.add(*extracted))


class StepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProtocolStep

    version = factory.SubFactory(VersionFactory)
    order = factory.Sequence(lambda n: n)
    kind = StepKind.INSTRUCTION
    title = factory.Sequence(lambda n: f"Step {n}")
    patient_text = "Cleanse gently with lukewarm water."
    timing = ProtocolStep.Timing.LOCAL_TIME
    day = 3
    local_time = dt.time(20, 0)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # The app never adds a step to a published version; fixtures that need a
        # published version with steps build them as if the version were a draft.
        return _while_draft(kwargs["version"], lambda: super(StepFactory, cls)._create(model_class, *args, **kwargs))


def _while_draft(version, build):  # noqa: ANN001, ANN202 - fixture helper
    """Run ``build`` with ``version`` stored as a draft, then restore its status (test data only)."""
    status = ProtocolVersion.objects.filter(pk=version.pk).values_list("status", flat=True).get()
    if status == ProtocolVersion.Status.DRAFT:
        return build()
    ProtocolVersion.objects.filter(pk=version.pk).update(status=ProtocolVersion.Status.DRAFT)
    try:
        return build()
    finally:
        ProtocolVersion.objects.filter(pk=version.pk).update(status=status)


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    clinic = factory.SubFactory(ClinicFactory)
    given_name = factory.Sequence(lambda n: f"Alex{n}")
    family_name = "Example"
    date_of_birth = dt.date(1985, 4, 12)
    email = factory.Sequence(lambda n: f"patient{n}@mail.example")
    reminder_consent = True
    consent_at = factory.LazyFunction(timezone.now)
    consent_source = Patient.ConsentSource.PAPER


def negative_answers(**overrides: Any) -> dict[str, Any]:
    """A complete intake that finds nothing: every yes/no question "no", skin type II, every date empty ("never").

    ``overrides`` change answers; an override of None leaves that question unanswered.
    """
    answers: dict[str, Any] = {fact.code: False for fact in FACTS if fact.type == FactType.BOOLEAN}
    answers["fitzpatrick_type"] = "II"  # no default rule reads types I–III
    answers.update(overrides)
    return {code: value for code, value in answers.items() if value is not None}


class IntakeFactory(factory.django.DjangoModelFactory):
    """An intake; by default a complete one that screens clear (unanswered questions do not)."""

    class Meta:
        model = Intake

    patient = factory.SubFactory(PatientFactory)
    answers = factory.LazyFunction(negative_answers)


def clinic_date(moment: dt.datetime, patient: Patient) -> dt.date:
    """``moment``'s date on the clock of ``patient``'s clinic: the day a screening is planned for."""
    return timezone.localtime(moment, ZoneInfo(patient.clinic.time_zone)).date()


#: How long before "now" (or before a TreatmentFactory's procedure) a factory screening was run.
SCREENED_BEFORE = dt.timedelta(days=1)


class ScreeningFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Screening

    patient = factory.SubFactory(PatientFactory)
    protocol_version = factory.SubFactory(
        VersionFactory, protocol__clinic=factory.SelfAttribute("...patient.clinic")
    )
    # For a procedure today on the clinic's clock: the gate wants the screening for the procedure's day.
    planned_for = factory.LazyAttribute(lambda screening: clinic_date(timezone.now(), screening.patient))
    outcome = Screening.Outcome.CLEAR
    run_by = factory.SubFactory(UserFactory)
    # Run the day before: a screening must precede the treatment, and tests record procedures that
    # started up to hours before "now".
    run_at = factory.LazyFunction(lambda: timezone.now() - SCREENED_BEFORE)


class TreatmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Treatment

    # Screened the day before the procedure, for the procedure's day, whenever the test says it started.
    screening = factory.SubFactory(
        ScreeningFactory,
        run_at=factory.LazyAttribute(lambda screening: screening.factory_parent.started_at - SCREENED_BEFORE),
        planned_for=factory.LazyAttribute(
            lambda screening: clinic_date(screening.factory_parent.started_at, screening.patient)
        ),
    )
    patient = factory.SelfAttribute("screening.patient")
    clinic = factory.SelfAttribute("patient.clinic")
    protocol_version = factory.SelfAttribute("screening.protocol_version")
    clinician = factory.SubFactory(UserFactory)
    started_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=1))
    ended_at = factory.LazyFunction(timezone.now)
    areas = "full face"


class ReminderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Reminder

    treatment = factory.SubFactory(TreatmentFactory)
    step = factory.SubFactory(StepFactory, version=factory.SelfAttribute("..treatment.protocol_version"))
    occurrence = 0
    occurs_at = factory.LazyFunction(timezone.now)
    due_at = factory.LazyFunction(timezone.now)


def treatable_patient(clinic: Clinic, *, steps: list[dict] | None = None, **patient_kwargs: object):  # noqa: ANN201
    """A consenting patient of ``clinic`` with a clear screening for a published version with ``steps``.

    Returns ``(patient, version, screening)``; each step dict is passed to ``StepFactory``.
    """
    patient = PatientFactory(clinic=clinic, **patient_kwargs)
    version = VersionFactory(protocol=ProtocolFactory(clinic=clinic))
    for step in steps if steps is not None else [{}]:
        StepFactory(version=version, **step)
    screening = ScreeningFactory(patient=patient, protocol_version=version)
    return patient, version, screening
