"""Benchmark data, written fast: COPY on PostgreSQL, ``executemany`` on SQLite, never through the services.

The services are what the benchmarks measure; the data around them (100,000
patients, a million outcome assessments) is written straight into the tables.
``Table`` fills every column a row does not name with the field's default, so
a column added to a model later does not break the seeding.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.core.management.color import no_style
from django.db import connection, models
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.models import Clinic, Membership, Role
from patients.models import (
    AdverseEvent,
    ExosomeApplication,
    Intake,
    OutcomeAssessment,
    Patient,
    Reminder,
    Screening,
    Treatment,
    TreatmentArm,
)
from patients.timeline import QuietHours, build_timeline
from protocols.defaults import install_example_products, install_example_protocols
from protocols.models import ProductLot, Protocol, ProtocolStep, ProtocolVersion, StepKind

UTC = dt.UTC
FAMILY_NAMES = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Wright", "Nguyen",
    "Müller", "Schmidt", "García", "Martin", "Rossi", "Kowalski", "Novak", "Haddad", "Okafor", "Tanaka", "Silva",
]
GIVEN_NAMES = ["Alex", "Sam", "Maria", "Amara", "Hiro", "Elena", "Omar", "Priya", "Chloé", "Ines", "Grace", "Noah", "Lea"]


# --- writing rows ---------------------------------------------------------------------------


def _default(field: models.Field, now: dt.datetime) -> Any:
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return now
    if field.has_default():
        return field.get_default()
    if field.null:
        return None
    return "" if field.empty_strings_allowed else None


class Table:
    """Rows of one model: the ``columns`` named per row, every other column its default."""

    def __init__(self, model: type[models.Model], columns: Sequence[str]) -> None:
        self.model = model
        fields = {field.attname: field for field in model._meta.concrete_fields}
        unknown = set(columns) - set(fields)
        if unknown:
            raise ValueError(f"{model.__name__} has no columns {sorted(unknown)}")
        now = timezone.now()
        self.named = [fields[name] for name in columns]
        # An unnamed auto primary key is left to the database's sequence.
        self.constant = [
            field for name, field in fields.items()
            if name not in columns and not (field.primary_key and isinstance(field, models.AutoField))
        ]
        self.constant_values = tuple(self._to_db(field, _default(field, now)) for field in self.constant)
        self.converters = [self._converter(field) for field in self.named]
        self.needs_conversion = any(converter is not None for converter in self.converters)

    @property
    def sql_columns(self) -> str:
        return ", ".join(connection.ops.quote_name(field.column) for field in [*self.named, *self.constant])

    @staticmethod
    def _converter(field: models.Field) -> Any:
        if isinstance(field, models.JSONField):
            return json.dumps
        if connection.vendor == "postgresql":
            return None  # psycopg writes Python values into COPY itself
        if isinstance(field, models.DateTimeField):
            return connection.ops.adapt_datetimefield_value
        if isinstance(field, models.DecimalField):
            return str
        return None

    def _to_db(self, field: models.Field, value: Any) -> Any:
        converter = self._converter(field)
        return converter(value) if converter is not None and value is not None else value

    def _convert(self, row: tuple) -> tuple:
        return tuple(
            value if converter is None or value is None else converter(value)
            for converter, value in zip(self.converters, row, strict=True)
        )

    def write(self, rows: Iterable[tuple]) -> int:
        """Insert ``rows`` (tuples in ``columns`` order); returns how many."""
        table = connection.ops.quote_name(self.model._meta.db_table)
        count = 0
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                with cursor.cursor.copy(f"COPY {table} ({self.sql_columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row((self._convert(row) if self.needs_conversion else row) + self.constant_values)
                        count += 1
            else:
                placeholders = ", ".join(["%s"] * (len(self.named) + len(self.constant)))
                sql = f"INSERT INTO {table} ({self.sql_columns}) VALUES ({placeholders})"  # noqa: S608 - names from the model
                batch: list[tuple] = []
                for row in rows:
                    batch.append(self._convert(row) + self.constant_values)
                    if len(batch) == 5000:
                        cursor.executemany(sql, batch)
                        count, batch = count + len(batch), []
                cursor.executemany(sql, batch)
                count += len(batch)
        return count


def next_id(model: type[models.Model]) -> int:
    return (model.objects.aggregate(top=models.Max("pk"))["top"] or 0) + 1


def reset_sequences(*model_classes: type[models.Model]) -> None:
    """After rows were written with explicit ids, make the next ``save()`` pick a free one (PostgreSQL)."""
    statements = connection.ops.sequence_reset_sql(no_style(), list(model_classes))
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def analyze() -> None:
    """Fresh planner statistics, as a production database has after autovacuum."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


# --- clinics, staff, protocols ----------------------------------------------------------------

STAFF_PASSWORD = "bench-password-not-used-for-anything-else"  # noqa: S105 - benchmark-only users


def bench_clinic(slug: str, name: str) -> Clinic:
    clinic, _ = Clinic.objects.get_or_create(
        slug=slug,
        defaults={"name": name, "time_zone": "Europe/London", "contact_email": f"desk@{slug}.example",
                  "sender_name": name, "require_two_factor": True},
    )
    return clinic


def staff_member(clinic: Clinic, role: str, username: str) -> Any:
    """A staff user with ``role`` in ``clinic`` and a confirmed TOTP device (the clinic requires two factors)."""
    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"email": f"{username}@staff.example", "is_staff": True}
    )
    if created:
        user.set_password(STAFF_PASSWORD)
        user.save()
        TOTPDevice.objects.create(user=user, name="bench", confirmed=True)
    Membership.objects.get_or_create(user=user, clinic=clinic, defaults={"role": role})
    return user


@dataclass(frozen=True)
class ClinicSetup:
    clinic: Clinic
    clinician: Any
    versions: dict[str, ProtocolVersion]
    lots: list[ProductLot]

    @property
    def usable_lot(self) -> ProductLot:
        today = timezone.localdate()
        return next(lot for lot in self.lots if lot.unusable_reason(today) is None)


def clinic_setup(slug: str, name: str) -> ClinicSetup:
    """A clinic with a clinician, the example products and lots, and the three example protocols."""
    clinic = bench_clinic(slug, name)
    clinician = staff_member(clinic, Role.CLINICIAN, f"{slug}-clinician")
    lots = install_example_products(clinic=clinic)
    versions = install_example_protocols(clinic=clinic)
    return ClinicSetup(clinic=clinic, clinician=clinician, versions=versions, lots=lots)


# --- patients and screenings ------------------------------------------------------------------


def patient_rows(clinic: Clinic, *, first_id: int, count: int, rng: random.Random, languages: Sequence[str] = ("en",)):
    """Consenting patients with an email address; names repeat as real names do."""
    created = timezone.now() - dt.timedelta(days=400)
    for index in range(count):
        pk = first_id + index
        yield (
            pk, clinic.pk, f"P{pk:07d}", rng.choice(GIVEN_NAMES), rng.choice(FAMILY_NAMES),
            dt.date(1960, 1, 1) + dt.timedelta(days=rng.randrange(15000)), f"patient{pk}@mail.example",
            rng.choice(languages), rng.randint(1, 6), True, created, "paper", created + dt.timedelta(minutes=index % 500_000),
        )


PATIENT_COLUMNS = (
    "id", "clinic_id", "reference", "given_name", "family_name", "date_of_birth", "email", "preferred_language",
    "fitzpatrick_type", "reminder_consent", "consent_at", "consent_source", "created_at",
)


def add_patients(clinic: Clinic, count: int, *, seed: int = 1, languages: Sequence[str] = ("en",)) -> range:
    """``count`` patients of ``clinic``; returns their ids."""
    first = next_id(Patient)
    Table(Patient, PATIENT_COLUMNS).write(patient_rows(clinic, first_id=first, count=count, rng=random.Random(seed),
                                                       languages=languages))
    reset_sequences(Patient)
    return range(first, first + count)


def clinic_date(clinic: Clinic, moment: dt.datetime) -> dt.date:
    """``moment``'s date on ``clinic``'s clock: the day a screening for a procedure starting then is planned for."""
    return timezone.localtime(moment, ZoneInfo(clinic.time_zone)).date()


def add_clear_screenings(
    patient_ids: range, *, version: ProtocolVersion, run_by: Any, run_at: dt.datetime, planned_for: dt.date
) -> range:
    """One clear screening per patient for ``version``, run at ``run_at`` for a procedure on ``planned_for``.

    Returns their ids (in patient order).
    """
    first = next_id(Screening)
    rows = (
        (first + index, patient_id, version.pk, planned_for, "clear", [], run_by.pk, run_at)
        for index, patient_id in enumerate(patient_ids)
    )
    Table(Screening, ("id", "patient_id", "protocol_version_id", "planned_for", "outcome", "findings", "run_by_id",
                      "run_at")).write(rows)
    reset_sequences(Screening)
    return range(first, first + len(patient_ids))


# --- reminder rows ------------------------------------------------------------------------------


def timeline_template(clinic: Clinic, version: ProtocolVersion, *, ended_at: dt.datetime) -> list[tuple]:
    """The version's reminder rows for a procedure ending at ``ended_at``: (step, occurrence, occurs, due) offsets."""
    occurrences = build_timeline(
        steps=list(version.steps.all()), ended_at=ended_at, zone=ZoneInfo(clinic.time_zone),
        quiet=QuietHours(start=clinic.quiet_hours_start, end=clinic.quiet_hours_end),
    )
    return [
        (item.step_id, item.occurrence, item.occurs_at - ended_at, item.due_at - ended_at)
        for item in occurrences
        if item.sends_reminder
    ]


REMINDER_COLUMNS = ("treatment_id", "step_id", "occurrence", "occurs_at", "due_at", "status", "sent_at", "done_at")


# --- the large dataset: 100,000 patients, 1,000,000 outcome assessments ---------------------------

OUTCOMES_PER_TREATMENT = 10
#: clinician time points (day, phase) and patient self-report days of a whole-face treatment: 7 + 3 = 10 rows
WHOLE_FACE_CLINICIAN = ((0, "before"), (0, "after"), (1, ""), (3, ""), (7, ""), (14, ""), (28, ""))
WHOLE_FACE_PATIENT = (1, 3, 7)
#: a split-face treatment: 4 clinician time points per arm and 2 self-reports: 8 + 2 = 10 rows
SPLIT_FACE_CLINICIAN = ((0, "after"), (1, ""), (3, ""), (7, ""))
SPLIT_FACE_PATIENT = (3, 7)
SPLIT_FACE_EVERY = 20  # one treatment in 20 is a split-face microneedling treatment
ADVERSE_EVENT_EVERY = 50
REMINDERS_EVERY = 10  # one treatment in 10 keeps its reminder rows (the outbox of recent months)
OUTCOME_COLUMNS = (
    "treatment_id", "arm_id", "time_point_day", "phase", "source", "erythema", "oedema", "reepithelialisation_complete",
    "pain", "pruritus", "gais", "recorded_by_id", "recorded_at", "applied_as_instructed", "problem_flagged",
)


@dataclass(frozen=True)
class LargeDataset:
    clinic: Clinic
    clinic_admin: Any
    auditor: Any
    patients: int
    treatments: int
    outcomes: int
    reminders: int
    sample_patient_id: int
    review_protocol: Protocol


@dataclass(frozen=True)
class PlannedTreatment:
    """One treatment of the large dataset, decided before any row is written."""

    pk: int
    patient_id: int
    screening_id: int
    version: ProtocolVersion
    ended_at: dt.datetime
    split_face: bool
    #: (exosome arm, control arm) ids of a split-face treatment
    arms: tuple[int, int] | None


def large_dataset(*, patients: int, log: Any = print) -> LargeDataset:
    """The clinic the export and page benchmarks read: ``patients`` patients with one treatment and 10 outcomes each.

    Built once per database (a second call finds it). 60 % of the treatments
    follow the microneedling protocol (one treatment in 20 is split-face), the rest
    the two laser protocols; one in 50 has an adverse event; one in ten keeps
    its 7–13 reminder rows.
    """
    existing = Clinic.objects.filter(slug="bench-large").first()
    if existing is not None:
        return _describe_large(existing)
    started = timezone.now()
    setup = clinic_setup("bench-large", "Bench Large Skin Clinic")
    staff_member(setup.clinic, Role.CLINIC_ADMIN, "bench-large-admin")
    staff_member(setup.clinic, Role.AUDITOR, "bench-large-auditor")
    patient_ids = add_patients(setup.clinic, patients, seed=7)
    plan = _plan(setup, patient_ids)
    _write_screenings_and_treatments(setup, plan)
    _write_arms_and_applications(setup, plan)
    rng = random.Random(13)
    outcomes = Table(OutcomeAssessment, OUTCOME_COLUMNS).write(_outcome_rows(setup, plan, rng))
    _write_adverse_events(setup, plan, rng)
    _write_reminders(setup, plan, rng)
    reset_sequences(Screening, Treatment, TreatmentArm, ExosomeApplication, OutcomeAssessment, AdverseEvent, Reminder)
    Intake.objects.create(patient_id=patient_ids[0], answers={"pregnant": False, "hsv_history": False},
                          recorded_by=setup.clinician)
    analyze()
    log(f"  seeded {patients:,} patients, {len(plan):,} treatments and {outcomes:,} outcome assessments "
        f"in {(timezone.now() - started).total_seconds():.0f} s")
    return _describe_large(setup.clinic)


def _describe_large(clinic: Clinic) -> LargeDataset:
    User = get_user_model()  # noqa: N806
    return LargeDataset(
        clinic=clinic,
        clinic_admin=User.objects.get(username="bench-large-admin"),
        auditor=User.objects.get(username="bench-large-auditor"),
        patients=Patient.objects.filter(clinic=clinic).count(),
        treatments=Treatment.objects.filter(clinic=clinic).count(),
        outcomes=OutcomeAssessment.objects.filter(treatment__clinic=clinic).count(),
        reminders=Reminder.objects.filter(treatment__clinic=clinic).count(),
        sample_patient_id=Patient.objects.filter(clinic=clinic).order_by("pk").values_list("pk", flat=True)[0],
        review_protocol=Protocol.objects.get(clinic=clinic, procedure="microneedling"),
    )


def _version_for(index: int, versions: dict[str, ProtocolVersion]) -> ProtocolVersion:
    slot = index % 20
    if slot < 12:
        return versions["microneedling"]
    return versions["fractional_nonablative"] if slot < 17 else versions["fractional_ablative"]


def _plan(setup: ClinicSetup, patient_ids: range) -> list[PlannedTreatment]:
    rng = random.Random(11)
    now = timezone.now().replace(microsecond=0)
    first_screening, first_treatment, first_arm = next_id(Screening), next_id(Treatment), next_id(TreatmentArm)
    plan = []
    for index, patient_id in enumerate(patient_ids):
        version = _version_for(index, setup.versions)
        split = version.procedure == "microneedling" and index % SPLIT_FACE_EVERY == 0
        arms = (first_arm, first_arm + 1) if split else None
        first_arm += 2 if split else 0
        ended_at = now - dt.timedelta(days=rng.randrange(1, 365), minutes=rng.randrange(600))
        plan.append(PlannedTreatment(first_treatment + index, patient_id, first_screening + index, version, ended_at,
                                     split, arms))
    return plan


def _write_screenings_and_treatments(setup: ClinicSetup, plan: list[PlannedTreatment]) -> None:
    clinician = setup.clinician.pk
    Table(Screening, ("id", "patient_id", "protocol_version_id", "planned_for", "outcome", "findings", "run_by_id",
                      "run_at")).write(
        (item.screening_id, item.patient_id, item.version.pk,
         clinic_date(setup.clinic, item.ended_at - dt.timedelta(minutes=45)), "clear", [], clinician,
         item.ended_at - dt.timedelta(days=2))
        for item in plan
    )
    Table(Treatment, ("id", "clinic_id", "patient_id", "protocol_version_id", "screening_id", "clinician_id",
                      "started_at", "ended_at", "areas", "device", "needle_depth_mm", "passes", "created_at")).write(
        (item.pk, setup.clinic.pk, item.patient_id, item.version.pk, item.screening_id, clinician,
         item.ended_at - dt.timedelta(minutes=45), item.ended_at, "Full face", "Bench device",
         Decimal("1.00") if item.version.procedure == "microneedling" else None, 2, item.ended_at)
        for item in plan
    )


def _write_arms_and_applications(setup: ClinicSetup, plan: list[PlannedTreatment]) -> None:
    """Two arms (exosome, control) per split-face treatment; one application per treatment (the exosome arm's)."""
    lot = setup.usable_lot
    arm_rows = []
    for item in plan:
        if item.arms:
            arm_rows += [(item.arms[0], item.pk, "Left", False, "", lot.product_id),
                         (item.arms[1], item.pk, "Right", True, "Saline only", None)]
    Table(TreatmentArm, ("id", "treatment_id", "label", "is_control", "control_description", "product_id")).write(arm_rows)
    Table(ExosomeApplication, ("treatment_id", "arm_id", "lot_id", "volume_ml", "minutes_after_procedure",
                               "applied_by_id")).write(
        (item.pk, item.arms[0] if item.arms else None, lot.pk, Decimal("2.50"), 5, setup.clinician.pk) for item in plan
    )


def _scores(day: int, rng: random.Random) -> tuple[int, int, bool, int, int, int | None]:
    """Erythema, oedema, re-epithelialised, pain, pruritus and GAIS that heal over the days, with noise."""
    erythema = max(0, min(4, 4 - day // 3 + rng.randint(-1, 1)))
    return (erythema, max(0, min(4, erythema - 1)), day >= 7 or rng.random() < 0.1, max(0, 6 - day + rng.randint(-1, 1)),
            rng.randint(0, 3), rng.randint(0, 3) if day >= 7 else None)


def _outcome_rows(setup: ClinicSetup, plan: list[PlannedTreatment], rng: random.Random):
    """Ten assessments per treatment: clinician scores at the protocol's time points, and self-reports."""
    clinician = setup.clinician.pk
    for item in plan:
        if item.arms:
            clinician_rows = [(arm, day, phase) for arm in item.arms for day, phase in SPLIT_FACE_CLINICIAN]
            patient_days = SPLIT_FACE_PATIENT
        else:
            clinician_rows = [(None, day, phase) for day, phase in WHOLE_FACE_CLINICIAN]
            patient_days = WHOLE_FACE_PATIENT
        for arm, day, phase in clinician_rows:
            yield (item.pk, arm, day, phase, "clinician", *_scores(day, rng), clinician,
                   item.ended_at + dt.timedelta(days=day, hours=1), None, False)
        for day in patient_days:
            erythema, oedema, _, pain, pruritus, _ = _scores(day, rng)
            yield (item.pk, None, day, "", "patient", erythema, oedema, None, pain, pruritus, None, None,
                   item.ended_at + dt.timedelta(days=day, hours=9), rng.random() < 0.9, rng.random() < 0.03)


def _write_adverse_events(setup: ClinicSetup, plan: list[PlannedTreatment], rng: random.Random) -> None:
    kinds = [AdverseEvent.Kind.PIH, AdverseEvent.Kind.MILIA, AdverseEvent.Kind.PROLONGED_ERYTHEMA, AdverseEvent.Kind.ACNEIFORM]
    Table(AdverseEvent, ("treatment_id", "kind", "onset_date", "resolution_date", "severity", "recorded_by_id",
                         "recorded_at")).write(
        (item.pk, rng.choice(kinds), item.ended_at.date() + dt.timedelta(days=3),
         item.ended_at.date() + dt.timedelta(days=20), AdverseEvent.Severity.MILD, setup.clinician.pk,
         item.ended_at + dt.timedelta(days=3))
        for item in plan[::ADVERSE_EVENT_EVERY]
    )


def _write_reminders(setup: ClinicSetup, plan: list[PlannedTreatment], rng: random.Random) -> None:
    """The reminder rows of one treatment in ten: sent when due, at-home steps mostly confirmed done."""
    now = timezone.now()
    reference = now.replace(hour=12, minute=0, second=0, microsecond=0)
    templates = {v.pk: timeline_template(setup.clinic, v, ended_at=reference) for v in setup.versions.values()}
    home_steps = set(
        ProtocolStep.objects.filter(version__in=list(templates), kind=StepKind.HOME_APPLICATION).values_list("pk", flat=True)
    )

    def rows():
        for item in plan[::REMINDERS_EVERY]:
            for step, occurrence, occurs, due in templates[item.version.pk]:
                occurs_at, due_at = item.ended_at + occurs, item.ended_at + due
                sent = due_at <= now
                done = occurs_at + dt.timedelta(hours=1) if sent and step in home_steps and rng.random() < 0.7 else None
                yield (item.pk, step, occurrence, occurs_at, due_at, "sent" if sent else "scheduled",
                       due_at + dt.timedelta(seconds=2) if sent else None, done)

    Table(Reminder, REMINDER_COLUMNS).write(rows())
