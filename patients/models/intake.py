"""Intake: a dated set of answers to the facts the rule library reads. Never overwritten."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords


class Intake(models.Model):
    class Source(models.TextChoices):
        STAFF = "staff", "Entered by staff"
        PATIENT_LINK = "patient_link", "Filled in by the patient (signed link)"

    CLINIC_PATH = "patient__clinic"

    patient = models.ForeignKey("patients.Patient", on_delete=models.PROTECT, related_name="intakes")
    answered_at = models.DateTimeField(default=timezone.now, help_text="When the answers were given.")
    answers = models.JSONField(default=dict, help_text="Fact code → answer; see protocols.facts.")
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.STAFF)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True, help_text="Last time staff re-confirmed the answers.")
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-answered_at"]
        get_latest_by = "answered_at"

    def __str__(self) -> str:
        return f"Intake of {self.patient} on {self.answered_at:%Y-%m-%d}"

    def save(self, *args: object, **kwargs: object) -> None:
        # Answers are what the patient said on a day; new answers are a new
        # intake. Only the re-confirmation fields may change afterwards.
        if self.pk is not None:
            stored = type(self).objects.filter(pk=self.pk).values("answers", "answered_at", "patient_id").first()
            if stored is not None and (
                stored["answers"] != self.answers
                or stored["answered_at"] != self.answered_at
                or stored["patient_id"] != self.patient_id
            ):
                raise PermissionDenied("Intake answers are never overwritten; record a new intake instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise PermissionDenied("Intakes are kept.")

    @property
    def effective_at(self):  # noqa: ANN201 - datetime
        return self.confirmed_at or self.answered_at
