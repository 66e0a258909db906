"""Screenings are kept forever and never change; an override is a separate record."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import models
from django.utils import timezone


class ScreeningOutcome(models.TextChoices):
    CLEAR = "clear", "Clear"
    CAUTION = "caution", "Caution"
    NEEDS_OVERRIDE = "needs_override", "Needs a clinician's override"
    BLOCKED = "blocked", "Blocked"


class KeptRecordQuerySet(models.QuerySet):
    """Bulk ``update()``/``delete()`` would bypass the per-row guards below."""

    def update(self, **kwargs: object) -> int:
        raise PermissionDenied("Screening records cannot be changed.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionDenied("Screening records are kept.")


class Screening(models.Model):
    CLINIC_PATH = "patient__clinic"
    Outcome = ScreeningOutcome

    patient = models.ForeignKey("patients.Patient", on_delete=models.PROTECT, related_name="screenings")
    protocol_version = models.ForeignKey("protocols.ProtocolVersion", on_delete=models.PROTECT, related_name="+")
    intake = models.ForeignKey("patients.Intake", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    planned_for = models.DateField(help_text="The planned procedure date; date windows are evaluated against it.")
    outcome = models.CharField(max_length=20, choices=ScreeningOutcome.choices)
    findings = models.JSONField(default=list)
    run_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    run_at = models.DateTimeField(default=timezone.now)

    objects = KeptRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-run_at"]
        indexes = [
            models.Index(fields=["patient", "protocol_version", "run_at"], name="screening_lookup"),
            # Lists show the newest first (the API's screenings); without it a page sorts every screening.
            models.Index(fields=["run_at"], name="screening_run_at"),
        ]

    def __str__(self) -> str:
        return f"Screening of {self.patient} for {self.protocol_version} on {self.run_at:%Y-%m-%d}: {self.get_outcome_display()}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None and type(self).objects.filter(pk=self.pk).exists():
            raise PermissionDenied("A screening is a record of what was found and cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise PermissionDenied("Screenings are kept.")


class ScreeningOverride(models.Model):
    CLINIC_PATH = "screening__patient__clinic"

    screening = models.OneToOneField(Screening, on_delete=models.PROTECT, related_name="override")
    reason = models.TextField()
    clinician = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = KeptRecordQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Override of screening {self.screening_id} by {self.clinician}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None and type(self).objects.filter(pk=self.pk).exists():
            raise PermissionDenied("An override cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise PermissionDenied("Overrides are kept.")
