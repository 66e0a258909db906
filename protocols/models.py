"""Protocols, their versions and timed steps; exosome products and lots; the contraindication rule library."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import FileExtensionValidator, MinValueValidator
from django.db import models
from django.db.models.signals import m2m_changed
from django.dispatch import receiver
from django.utils import timezone
from django.utils.text import slugify
from simple_history.models import HistoricalRecords

from protocols.facts import FACTS_BY_CODE, FactType, fact_choices
from protocols.steps import StepInput, validate_step


class Procedure(models.TextChoices):
    MICRONEEDLING = "microneedling", "Microneedling (optionally with RF)"
    FRACTIONAL_NONABLATIVE = "fractional_nonablative", "Non-ablative fractional laser"
    FRACTIONAL_ABLATIVE = "fractional_ablative", "Ablative fractional laser (CO₂, Er:YAG)"


# --- exosome products and lots -------------------------------------------------


class ExosomeProduct(models.Model):
    class Source(models.TextChoices):
        HUMAN = "human", "Human"
        ANIMAL = "animal", "Animal"
        PLANT = "plant", "Plant"
        OTHER = "other", "Other / undisclosed"

    class RegulatoryStatus(models.TextChoices):
        COSMETIC = "cosmetic", "Sold as a cosmetic"
        INVESTIGATIONAL = "investigational", "Investigational use"
        OTHER = "other", "Other (see notes)"

    SHARED_TEMPLATES = True

    clinic = models.ForeignKey(
        "clinic.Clinic", null=True, blank=True, on_delete=models.PROTECT, related_name="products",
        help_text="Empty for a shared catalogue entry.",
    )
    name = models.CharField(max_length=200)
    manufacturer = models.CharField(max_length=200)
    source = models.CharField(max_length=10, choices=Source.choices)
    cell_type = models.CharField(max_length=200, help_text="e.g. adipose-derived stem cells, umbilical cord MSC, plant")
    plated = models.BooleanField(default=False, help_text="Culture-produced under a validated protocol.")
    characterisation = models.TextField(
        blank=True, help_text="What the maker publishes: particle size, CD9/CD63/CD81 markers, potency assay."
    )
    publishes_particle_size = models.BooleanField(default=False)
    publishes_markers = models.BooleanField("publishes CD9/CD63/CD81 markers", default=False)
    publishes_potency_assay = models.BooleanField(default=False)
    tested_sterility = models.BooleanField("third-party sterility testing", default=False)
    tested_endotoxin = models.BooleanField("third-party endotoxin testing", default=False)
    tested_vesicle_concentration = models.BooleanField("third-party vesicle concentration", default=False)
    storage_requirements = models.TextField(blank=True, help_text="Cold chain, handling after opening.")
    storage_min_celsius = models.DecimalField(max_digits=4, decimal_places=1, null=True, blank=True)
    storage_max_celsius = models.DecimalField(max_digits=4, decimal_places=1, null=True, blank=True)
    regulatory_status = models.CharField(
        max_length=20, choices=RegulatoryStatus.choices, default=RegulatoryStatus.COSMETIC,
        help_text="No exosome product is approved as a drug by the FDA.",
    )
    notes = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.manufacturer})"

    def clean(self) -> None:
        low, high = self.storage_min_celsius, self.storage_max_celsius
        if low is not None and high is not None and low > high:
            raise ValidationError({"storage_max_celsius": "The highest storage temperature is below the lowest."})


class ProductLotQuerySet(models.QuerySet):
    def usable_on(self, on: dt.date) -> ProductLotQuerySet:
        """Lots that may be applied on ``on``: not recalled, received by then and not expired (good through its expiry day)."""
        return self.filter(recalled=False, received_date__lte=on, expiry_date__gte=on)

    def expired_on(self, on: dt.date) -> ProductLotQuerySet:
        return self.filter(expiry_date__lt=on)


CERTIFICATE_EXTENSIONS = ["pdf", "png", "jpg", "jpeg"]
CERTIFICATE_MAX_BYTES = 10 * 1024 * 1024
# How each accepted kind of file begins. The download is served with the type its name says
# (a .pdf as application/pdf), so the content must be what the name says, not merely named so.
_CERTIFICATE_SIGNATURES = {
    "pdf": ("PDF document", b"%PDF-"),
    "png": ("PNG picture", b"\x89PNG\r\n\x1a\n"),
    "jpg": ("JPEG picture", b"\xff\xd8\xff"),
    "jpeg": ("JPEG picture", b"\xff\xd8\xff"),
}


def certificate_content_error(upload: Any) -> str | None:
    """Why an uploaded certificate's bytes are not the kind of file its name says, or None when they are.

    A name with another extension is left to the field's extension validator.
    """
    extension = upload.name.rsplit(".", 1)[-1].lower() if "." in upload.name else ""
    if extension not in _CERTIFICATE_SIGNATURES:
        return None
    kind, signature = _CERTIFICATE_SIGNATURES[extension]
    upload.seek(0)
    head = upload.read(len(signature))
    upload.seek(0)
    if head != signature:
        return (f"“{upload.name.rsplit('/', 1)[-1]}” is not a {kind}, whatever its name says. "
                "Upload the certificate of analysis as a PDF, PNG or JPEG file.")
    return None


def certificate_path(instance: ProductLot, filename: str) -> str:
    # The lot number is typed by staff: slugified and cut short, it can neither climb out of the
    # folder ("../") nor push the path past the column's 100 characters (both were a 400 page).
    folder = slugify(instance.lot_number)[:40] or "lot"
    return f"certificates/{instance.product_id}/{folder}/{filename}"


class ProductLot(models.Model):
    CLINIC_PATH = "clinic"

    clinic = models.ForeignKey("clinic.Clinic", on_delete=models.PROTECT, related_name="lots")
    product = models.ForeignKey(ExosomeProduct, on_delete=models.PROTECT, related_name="lots")
    lot_number = models.CharField(max_length=80)
    expiry_date = models.DateField()
    received_date = models.DateField()
    storage_checks = models.TextField(blank=True, help_text="Temperature log, cold-chain checks on receipt.")
    certificate = models.FileField(
        upload_to=certificate_path, blank=True, validators=[FileExtensionValidator(CERTIFICATE_EXTENSIONS)],
        help_text="Certificate of analysis (PDF or image, at most 10 MB). Only the clinic's staff can open it.",
    )
    recalled = models.BooleanField(default=False)
    recalled_at = models.DateTimeField(null=True, blank=True)
    recall_reason = models.TextField(blank=True)
    history = HistoricalRecords()

    objects = ProductLotQuerySet.as_manager()

    class Meta:
        ordering = ["product__name", "expiry_date"]
        constraints = [
            models.UniqueConstraint(fields=["clinic", "product", "lot_number"], name="lot_number_unique_per_product"),
        ]

    def __str__(self) -> str:
        return f"{self.product.name} lot {self.lot_number} (exp. {self.expiry_date:%Y-%m-%d})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Keep when a recall was recorded, so "was it recalled before it was applied?" has an answer.
        if self.recalled and self.recalled_at is None:
            self.recalled_at = timezone.now()
        elif not self.recalled:
            self.recalled_at = None  # a lifted recall; a later one gets its own time (history keeps this one)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.received_date and self.expiry_date and self.received_date > self.expiry_date:
            raise ValidationError({"expiry_date": "The lot expires before it was received."})
        if self.recalled and not self.recall_reason:
            raise ValidationError({"recall_reason": "Say why the lot was recalled."})
        if self.product_id and self.clinic_id and self.product.clinic_id not in (None, self.clinic_id):
            raise ValidationError({"product": "This product belongs to another clinic."})
        # Only a fresh upload is measured; a stored file was checked when it arrived.
        uploading = self.certificate and not getattr(self.certificate, "_committed", True)
        if uploading and self.certificate.size > CERTIFICATE_MAX_BYTES:
            raise ValidationError({"certificate": "The certificate is larger than 10 MB."})
        problem = certificate_content_error(self.certificate) if uploading else None
        if problem:
            raise ValidationError({"certificate": problem})

    def recalled_after(self, applied_at: dt.datetime | None) -> bool:
        """Whether the lot, though recalled now, was recalled only after ``applied_at``.

        A procedure recorded after the fact keeps the lot it really received:
        refusing it would leave that patient off the recall's list of applications.
        """
        return bool(self.recalled and self.recalled_at and applied_at and applied_at < self.recalled_at)

    def recall_day(self) -> dt.date | None:
        """The clinic's date on which the recall was entered."""
        if self.recalled_at is None:
            return None
        return self.recalled_at.astimezone(ZoneInfo(self.clinic.time_zone)).date()

    def unusable_reason(self, on: dt.date, *, applied_at: dt.datetime | None = None) -> str | None:
        """Why this lot cannot be applied on ``on`` (at ``applied_at``, when known), or None when it can.

        A recalled lot stays usable for an application made before the recall was entered.
        """
        if self.recalled and not self.recalled_after(applied_at):
            since = self.recall_day()
            if since is None:
                return f"Lot {self.lot_number} has been recalled."
            return f"Lot {self.lot_number} has been recalled (since {since:%Y-%m-%d})."
        if self.received_date > on:
            return f"Lot {self.lot_number} was not received until {self.received_date:%Y-%m-%d}."
        if self.expiry_date < on:
            return f"Lot {self.lot_number} expired on {self.expiry_date:%Y-%m-%d}."
        return None

    def assert_usable(self, on: dt.date, *, applied_at: dt.datetime | None = None, field: str = "lot") -> None:
        reason = self.unusable_reason(on, applied_at=applied_at)
        if reason:
            raise ValidationError({field: reason})


# --- contraindication rules --------------------------------------------------------


class Severity(models.TextChoices):
    ABSOLUTE = "absolute", "Absolute — blocks, no override"
    RELATIVE = "relative", "Relative — needs a clinician's override"
    CAUTION = "caution", "Caution — shown and recorded"


class ContraindicationRule(models.Model):
    """One rule of the library, as data: a fact, a condition, a severity.

    Rules with no clinic form the default library; a clinic rule with the same
    ``code`` replaces the default for that clinic.
    """

    class Condition(models.TextChoices):
        IS_TRUE = "is_true", "Answer is yes"
        WITHIN_DAYS = "within_days", "Date is within the last N days of the procedure"
        IN_SET = "in_set", "Answer is one of"

    class AppliesTo(models.TextChoices):
        PROCEDURE = "procedure", "The procedure"
        EXOSOME = "exosome", "The exosome application"

    SHARED_TEMPLATES = True

    clinic = models.ForeignKey(
        "clinic.Clinic", null=True, blank=True, on_delete=models.PROTECT, related_name="rules",
        help_text="Empty for the default library.",
    )
    code = models.SlugField(max_length=80, help_text="Stable name; a clinic rule with a default's code replaces it.")
    fact = models.CharField(max_length=60, choices=fact_choices(), help_text="The intake answer the rule reads.")
    condition = models.CharField(max_length=20, choices=Condition.choices, default=Condition.IS_TRUE)
    window_days = models.PositiveIntegerField(null=True, blank=True, help_text="For 'within the last N days'.")
    values = models.JSONField(default=list, blank=True, help_text="For 'answer is one of'.")
    procedures = models.JSONField(default=list, blank=True, help_text="Procedure codes; empty means all.")
    applies_to = models.CharField(max_length=10, choices=AppliesTo.choices, default=AppliesTo.PROCEDURE)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    message = models.TextField(help_text="What staff see.")
    mitigation = models.TextField(blank=True)
    citation = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["clinic", "code"], name="rule_code_unique_per_clinic"),
            models.UniqueConstraint(
                fields=["code"], condition=models.Q(clinic__isnull=True), name="rule_code_unique_in_library"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.severity})"

    @property
    def is_default(self) -> bool:
        return self.clinic_id is None

    def clean(self) -> None:
        errors = rule_errors(
            fact=self.fact, condition=self.condition, window_days=self.window_days,
            values=self.values, procedures=self.procedures,
        )
        if errors:
            raise ValidationError(errors)


def rule_errors(
    *, fact: str, condition: str, window_days: int | None, values: Any, procedures: Any
) -> dict[str, list[str]]:
    """Problems with a rule's condition, by field: the condition must fit the kind of fact it reads."""
    errors: dict[str, list[str]] = {}
    known = FACTS_BY_CODE.get(fact)
    if known is None:
        errors["fact"] = [f"Unknown fact {fact!r}."]
    if not isinstance(procedures, list) or any(code not in Procedure.values for code in procedures):
        errors["procedures"] = [f"Procedures must be a list of: {', '.join(Procedure.values)} (empty means all)."]
    Condition = ContraindicationRule.Condition  # noqa: N806
    if condition == Condition.WITHIN_DAYS:
        if not window_days:
            errors["window_days"] = ["Say how many days back the window reaches (at least 1)."]
        if known is not None and known.type != FactType.DATE:
            errors.setdefault("condition", []).append("'Within the last N days' needs a fact that is a date.")
    elif condition == Condition.IN_SET:
        if not isinstance(values, list) or not values:
            errors["values"] = ["List the answers that trigger the rule."]
        elif known is not None and known.choices:
            allowed = {code for code, _label in known.choices}
            unknown = [value for value in values if value not in allowed]
            if unknown:
                errors["values"] = [f"Not answers to this question: {', '.join(map(str, unknown))}."]
    elif condition == Condition.IS_TRUE and known is not None and known.type != FactType.BOOLEAN:
        errors.setdefault("condition", []).append("'Answer is yes' needs a yes/no fact.")
    return errors


# --- protocols ----------------------------------------------------------------------


class Protocol(models.Model):
    SHARED_TEMPLATES = True

    clinic = models.ForeignKey(
        "clinic.Clinic", null=True, blank=True, on_delete=models.PROTECT, related_name="protocols",
        help_text="Empty for a shared template.",
    )
    name = models.CharField(max_length=200)
    procedure = models.CharField(max_length=30, choices=Procedure.choices)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The procedure decides which default rules a version screens against and
        # the clinic who owns it; neither may move under a version already in use.
        if self.pk is not None:
            stored = type(self).objects.filter(pk=self.pk).values("procedure", "clinic_id").first()
            frozen = self.versions.exclude(status=ProtocolVersion.Status.DRAFT).exists()
            if stored and frozen and (stored["procedure"], stored["clinic_id"]) != (self.procedure, self.clinic_id):
                raise FrozenVersionError(
                    "The procedure and clinic of a protocol with published versions cannot change; "
                    "create a new protocol instead."
                )
        super().save(*args, **kwargs)

    # These read ``versions.all()`` so that lists which prefetch the versions
    # (admin changelist, API) pay no query per protocol.
    @property
    def current_version(self) -> ProtocolVersion | None:
        """The published version new treatments use (the highest-numbered one)."""
        published = [v for v in self.versions.all() if v.status == ProtocolVersion.Status.PUBLISHED]
        return max(published, key=lambda version: version.number, default=None)

    @property
    def draft(self) -> ProtocolVersion | None:
        return next((v for v in self.versions.all() if v.status == ProtocolVersion.Status.DRAFT), None)

    @property
    def status(self) -> str:
        """``published`` while any version is in use for new treatments, ``draft`` before, ``retired`` after."""
        statuses = {version.status for version in self.versions.all()}
        for status in (ProtocolVersion.Status.PUBLISHED, ProtocolVersion.Status.DRAFT, ProtocolVersion.Status.RETIRED):
            if status in statuses:
                return status
        return ProtocolVersion.Status.DRAFT


class FrozenVersionError(ValidationError):
    """Something tried to change a published or retired protocol version (or its steps or rules)."""


def assert_version_editable(version_id: int | None) -> None:
    """Refuse when the stored version ``version_id`` is published or retired.

    The status is read from the database, not from an in-memory instance, so a
    stale object cannot slip a change past a version published in the meantime.
    """
    if version_id is None:
        return
    row = ProtocolVersion.objects.filter(pk=version_id).values("status", "number", "protocol__name").first()
    if row is not None and row["status"] != ProtocolVersion.Status.DRAFT:
        raise FrozenVersionError(
            f"{row['protocol__name']} v{row['number']} is {row['status']} and cannot change; "
            "create a new draft version instead."
        )


class ProtocolVersionQuerySet(models.QuerySet):
    def delete(self) -> tuple[int, dict[str, int]]:
        if self.exclude(status=ProtocolVersion.Status.DRAFT).exists():
            raise FrozenVersionError("Published and retired protocol versions are kept.")
        return super().delete()


class ProtocolVersion(models.Model):
    """A numbered state of a protocol. Once published it never changes again."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"
        RETIRED = "retired", "Retired"

    CLINIC_PATH = "protocol__clinic"
    SHARED_TEMPLATES = True

    protocol = models.ForeignKey(Protocol, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    change_note = models.TextField(blank=True)
    length_days = models.PositiveIntegerField(default=42, help_text="The protocol ends this many days after the procedure.")
    added_rules = models.ManyToManyField(
        ContraindicationRule, blank=True, related_name="+", help_text="Rules used in addition to the defaults for the procedure."
    )
    removed_rules = models.ManyToManyField(
        ContraindicationRule, blank=True, related_name="+", help_text="Default rules this protocol does not use."
    )
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    objects = ProtocolVersionQuerySet.as_manager()

    class Meta:
        ordering = ["protocol", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["protocol", "number"], name="version_number_unique"),
            models.UniqueConstraint(
                fields=["protocol"], condition=models.Q(status="draft"), name="one_draft_per_protocol"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.protocol.name} v{self.number} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            self._refuse_frozen_change()
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        assert_version_editable(self.pk)
        return super().delete(*args, **kwargs)

    @property
    def procedure(self) -> str:
        return self.protocol.procedure

    @property
    def is_frozen(self) -> bool:
        return self.status != self.Status.DRAFT

    @property
    def clinic(self) -> Any:
        return self.protocol.clinic

    def _refuse_frozen_change(self) -> None:
        # A frozen version may only move from published to retired; every
        # other field stays as it was when treatments started to use it.
        names = [field.attname for field in self._meta.concrete_fields]
        stored = type(self).objects.filter(pk=self.pk).values(*names).first()
        if stored is None or stored["status"] == self.Status.DRAFT:
            return
        changed = {name for name in names if getattr(self, name) != stored[name]}
        retiring = stored["status"] == self.Status.PUBLISHED and self.status == self.Status.RETIRED
        if changed and not (retiring and changed == {"status"}):
            raise FrozenVersionError(
                f"{self.protocol.name} v{self.number} is {stored['status']} and cannot change "
                f"({', '.join(sorted(changed))}); create a new draft version instead."
            )


class ProtocolStepQuerySet(models.QuerySet):
    """Bulk writes respect frozen versions too (``save()`` is not called by them)."""

    def _refuse_frozen(self) -> None:
        if self.exclude(version__status=ProtocolVersion.Status.DRAFT).exists():
            raise FrozenVersionError("Steps of published or retired versions cannot change.")

    def update(self, **kwargs: Any) -> int:
        self._refuse_frozen()
        _forget_frozen_steps()
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        self._refuse_frozen()
        _forget_frozen_steps()
        return super().delete()

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[Any]:
        objs = list(objs)
        for version_id in {obj.version_id for obj in objs}:
            assert_version_editable(version_id)
        _forget_frozen_steps()
        return super().bulk_create(objs, *args, **kwargs)


def _forget_frozen_steps() -> None:
    # Bulk writes send no signals; ``protocols.frozen_steps`` must still hear of them.
    from protocols.frozen_steps import forget_frozen_steps

    forget_frozen_steps()


class StepKind(models.TextChoices):
    IN_CLINIC_APPLICATION = "in_clinic_application", "In-clinic exosome application"
    HOME_APPLICATION = "home_application", "At-home application"
    INSTRUCTION = "instruction", "Instruction"
    AVOIDANCE = "avoidance", "Avoidance"
    FOLLOW_UP_VISIT = "follow_up_visit", "Follow-up visit"
    OUTCOME_CHECK = "outcome_check", "Outcome check"


class ProtocolStep(models.Model):
    """One timed step of a protocol version.

    Timing is either an offset from the end of the procedure
    (``offset_value`` ``offset_unit``) or a day and a patient-local wall-clock
    time (``day`` at ``local_time``).  A step may repeat ``repeat_count`` times
    every ``repeat_every_days`` days (e.g. nightly for 7 days).
    """

    class Timing(models.TextChoices):
        OFFSET = "offset", "Offset from the end of the procedure"
        LOCAL_TIME = "local_time", "Day N at a patient-local time"

    class Unit(models.TextChoices):
        MINUTES = "minutes", "minutes"
        HOURS = "hours", "hours"
        DAYS = "days", "days"

    CLINIC_PATH = "version__protocol__clinic"
    SHARED_TEMPLATES = True

    version = models.ForeignKey(ProtocolVersion, on_delete=models.CASCADE, related_name="steps")
    # The same step across versions: copied into each new draft, so a diff can
    # tell "changed" from "removed and added".
    lineage = models.UUIDField(default=uuid.uuid4, editable=False, db_index=True)
    order = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=30, choices=StepKind.choices)
    title = models.CharField(max_length=200)
    patient_text = models.TextField(blank=True, help_text="What the patient reads in the reminder.")
    staff_notes = models.TextField(blank=True)
    timing = models.CharField(max_length=12, choices=Timing.choices, default=Timing.OFFSET)
    offset_value = models.IntegerField(null=True, blank=True, help_text="May be negative: day −1 is before the procedure.")
    offset_unit = models.CharField(max_length=10, choices=Unit.choices, default=Unit.MINUTES)
    day = models.IntegerField(null=True, blank=True, help_text="Day after the procedure (0 = the day of it).")
    local_time = models.TimeField(null=True, blank=True, help_text="Patient-local wall-clock time.")
    repeat_count = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    repeat_every_days = models.PositiveIntegerField(null=True, blank=True)
    avoid_until_day = models.IntegerField(null=True, blank=True, help_text="For avoidance steps: avoid until this day.")
    product = models.ForeignKey(ExosomeProduct, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    sends_reminder = models.BooleanField(default=True)
    remind_minutes_before = models.PositiveIntegerField(default=0)
    history = HistoricalRecords()

    objects = ProtocolStepQuerySet.as_manager()

    class Meta:
        ordering = ["version", "order", "id"]

    def __str__(self) -> str:
        return self.title

    def save(self, *args: Any, **kwargs: Any) -> None:
        assert_version_editable(self.version_id)
        if self.pk is not None:
            stored_version = type(self).objects.filter(pk=self.pk).values_list("version_id", flat=True).first()
            if stored_version != self.version_id:
                assert_version_editable(stored_version)
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        assert_version_editable(self.version_id)
        return super().delete(*args, **kwargs)

    def _timing_fields_are_typed(self) -> bool:
        numbers = (self.offset_value, self.day, self.repeat_count, self.repeat_every_days, self.avoid_until_day,
                   self.remind_minutes_before)
        return all(value is None or isinstance(value, int) for value in numbers) and (
            self.local_time is None or isinstance(self.local_time, dt.time)
        )

    def as_input(self) -> StepInput:
        return StepInput(
            kind=self.kind, timing=self.timing, offset_value=self.offset_value, offset_unit=self.offset_unit,
            day=self.day, local_time=self.local_time, repeat_count=self.repeat_count,
            repeat_every_days=self.repeat_every_days, avoid_until_day=self.avoid_until_day,
            has_product=self.product_id is not None, sends_reminder=self.sends_reminder,
            remind_minutes_before=self.remind_minutes_before,
        )

    def clean(self) -> None:
        if self.version_id is not None and self.version.is_frozen:
            raise FrozenVersionError(
                f"{self.version} cannot change; create a new draft version instead."
            )
        if not self._timing_fields_are_typed():
            return  # clean_fields() reports the malformed value; cross-field checks need real values
        length_days = self.version.length_days if self.version_id is not None else 42
        validate_step(self.as_input(), length_days=length_days)
        clinic_id = self.version.protocol.clinic_id if self.version_id is not None else None
        if self.product_id is not None and self.product.clinic_id not in (None, clinic_id):
            raise ValidationError({"product": "This product belongs to another clinic."})


@receiver(m2m_changed, sender=ProtocolVersion.added_rules.through)
@receiver(m2m_changed, sender=ProtocolVersion.removed_rules.through)
def _refuse_rule_changes_of_frozen_versions(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    """Rule additions and removals belong to the version: frozen with it, and from its clinic or the library."""
    if not action.startswith("pre_"):
        return
    if not reverse:
        assert_version_editable(instance.pk)
        if action == "pre_add" and pk_set:
            foreign = ContraindicationRule.objects.filter(pk__in=pk_set).exclude(
                models.Q(clinic__isnull=True) | models.Q(clinic_id=instance.protocol.clinic_id)
            )
            if foreign.exists():
                raise ValidationError("A protocol can only use default rules and rules of its own clinic.")
        return
    # Changed from the rule's side: check every version touched.
    versions = ProtocolVersion.objects.filter(pk__in=pk_set) if pk_set else ProtocolVersion.objects.none()
    if action == "pre_clear":
        versions = ProtocolVersion.objects.filter(
            pk__in=sender.objects.filter(contraindicationrule_id=instance.pk).values("protocolversion_id")
        )
    for version_id in versions.values_list("pk", flat=True):
        assert_version_editable(version_id)
