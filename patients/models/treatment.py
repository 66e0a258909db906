"""A treatment: the procedure as done, its in-clinic exosome application and its split-face arms."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords

# Microneedling pens reach 2.5–3 mm and RF microneedling tips 3.5–4 mm on the face, 7 mm on the body:
# a deeper figure is a typing mistake, not a setting.
MAX_NEEDLE_DEPTH_MM = Decimal("8")


def validate_needle_depth(value: Decimal) -> None:
    if value <= 0:
        raise ValidationError("A needle depth is more than 0 mm; leave it empty when no needles were used.", code="min_value")
    if value > MAX_NEEDLE_DEPTH_MM:
        raise ValidationError(
            f"No microneedling reaches deeper than {MAX_NEEDLE_DEPTH_MM} mm; check the number.", code="max_value"
        )


class Treatment(models.Model):
    class Status(models.TextChoices):
        RECORDED = "recorded", "Recorded"
        CANCELLED = "cancelled", "Cancelled"

    # clinic is kept on the row (it always equals patient.clinic) so that
    # scoping and the dashboard filter on an indexed column without a join.
    clinic = models.ForeignKey("clinic.Clinic", on_delete=models.PROTECT, related_name="treatments")
    patient = models.ForeignKey("patients.Patient", on_delete=models.PROTECT, related_name="treatments")
    protocol_version = models.ForeignKey("protocols.ProtocolVersion", on_delete=models.PROTECT, related_name="treatments")
    screening = models.ForeignKey("patients.Screening", on_delete=models.PROTECT, related_name="treatments")
    clinician = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(help_text="Step offsets count from here.")
    areas = models.CharField(max_length=200, help_text="Treated areas, e.g. full face, perioral.")
    device = models.CharField(max_length=120, blank=True)
    needle_depth_mm = models.DecimalField(
        max_digits=4, decimal_places=2, null=True, blank=True, validators=[validate_needle_depth]
    )
    energy = models.CharField(max_length=60, blank=True, help_text="e.g. 15 mJ, 40 W")
    density = models.CharField(max_length=60, blank=True, help_text="e.g. 5 %, 100 spots/cm²")
    passes = models.PositiveSmallIntegerField(
        null=True, blank=True,
        validators=[MinValueValidator(1, "A treatment has at least one pass; leave it empty if not recorded.")],
    )
    settings_notes = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECORDED)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    cancel_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-ended_at"]
        indexes = [models.Index(fields=["clinic", "ended_at"], name="treatment_clinic_ended")]
        constraints = [
            # One screening clears one procedure: a double click or an API retry must not record the
            # treatment (and schedule every reminder) twice. A cancelled treatment frees its screening.
            models.UniqueConstraint(
                fields=["screening"], condition=~models.Q(status="cancelled"), name="treatment_one_per_screening",
                violation_error_message="This screening was already used for another treatment.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.protocol_version.protocol.name} for {self.patient} on {self.ended_at:%Y-%m-%d}"

    def procedure_date(self) -> dt.date:
        """The day of the procedure in the clinic's time zone: the date a lot's expiry is judged by."""
        return self.ended_at.astimezone(ZoneInfo(self.clinic.time_zone)).date()

    def clean(self) -> None:
        if self.started_at and self.ended_at and self.ended_at < self.started_at:
            raise ValidationError({"ended_at": "The procedure cannot end before it started."})


class TreatmentArm(models.Model):
    """One side (or area) of a split-face treatment, with its own product or a control."""

    CLINIC_PATH = "treatment__clinic"

    treatment = models.ForeignKey(Treatment, on_delete=models.PROTECT, related_name="arms")
    label = models.CharField(max_length=40, help_text="e.g. left, right, forehead")
    is_control = models.BooleanField(default=False, help_text="Receives the control (e.g. saline) instead of exosomes.")
    control_description = models.CharField(max_length=200, blank=True)
    product = models.ForeignKey("protocols.ExosomeProduct", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    history = HistoricalRecords()

    class Meta:
        ordering = ["treatment", "label"]
        constraints = [models.UniqueConstraint(fields=["treatment", "label"], name="arm_label_unique")]

    def __str__(self) -> str:
        return f"{self.label} ({'control' if self.is_control else self.product or 'exosome'})"


class ExosomeApplication(models.Model):
    """An exosome application in clinic: which lot, how much, how soon after the procedure, by whom."""

    CLINIC_PATH = "treatment__clinic"

    treatment = models.ForeignKey(Treatment, on_delete=models.PROTECT, related_name="applications")
    arm = models.ForeignKey(TreatmentArm, null=True, blank=True, on_delete=models.PROTECT, related_name="applications")
    lot = models.ForeignKey("protocols.ProductLot", on_delete=models.PROTECT, related_name="applications")
    volume_ml = models.DecimalField(max_digits=5, decimal_places=2, validators=[MinValueValidator(0)])
    minutes_after_procedure = models.PositiveIntegerField(default=0)
    applied_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    history = HistoricalRecords()

    class Meta:
        ordering = ["treatment", "id"]

    def __str__(self) -> str:
        return f"{self.volume_ml} ml of lot {self.lot.lot_number}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self._state.adding:
            self.assert_lot_usable()
        super().save(*args, **kwargs)

    def assert_lot_usable(self) -> None:
        """Enforced on insert, not only in forms: an expired or recalled lot is never applied.

        ``save()`` calls it; code that bulk-inserts applications calls it for each.
        Judged on the clinic's date of the procedure, as the forms judge it, and
        a recall against the time of the application.
        """
        self.lot.assert_usable(self.treatment.procedure_date(), applied_at=self.applied_at())

    def applied_at(self) -> dt.datetime:
        """When the product went on: the end of the procedure plus the minutes after it."""
        return self.treatment.ended_at + dt.timedelta(minutes=self.minutes_after_procedure or 0)

    def clean(self) -> None:
        if self.lot_id and self.treatment_id:
            self.lot.assert_usable(self.treatment.procedure_date(), applied_at=self.applied_at())
            if self.lot.clinic_id != self.treatment.clinic_id:
                raise ValidationError({"lot": "This lot belongs to another clinic."})
