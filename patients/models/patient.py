"""A patient of one clinic."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords

from clinic.models.tenant import validate_time_zone


class Patient(models.Model):
    class ConsentSource(models.TextChoices):
        PAPER = "paper", "Signed paper form"
        VERBAL = "verbal", "Verbal, recorded by staff"
        ONLINE = "online", "Online form"

    clinic = models.ForeignKey("clinic.Clinic", on_delete=models.PROTECT, related_name="patients")
    reference = models.CharField(max_length=20, blank=True, help_text="The clinic's patient number.")
    given_name = models.CharField(max_length=100)
    family_name = models.CharField(max_length=100)
    date_of_birth = models.DateField()
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    preferred_language = models.CharField(max_length=8, choices=settings.LANGUAGES, default="en")
    time_zone = models.CharField(
        max_length=64, blank=True, validators=[validate_time_zone], help_text="Empty means the clinic's time zone."
    )
    fitzpatrick_type = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(6)],
        choices=[(n, f"Type {roman}") for n, roman in enumerate(["I", "II", "III", "IV", "V", "VI"], start=1)],
    )
    reminder_consent = models.BooleanField("consents to email reminders", default=False)
    consent_at = models.DateTimeField(null=True, blank=True)
    consent_source = models.CharField(max_length=10, choices=ConsentSource.choices, blank=True)
    opted_out_at = models.DateTimeField(null=True, blank=True, help_text="Set when the patient unsubscribes.")
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["family_name", "given_name"]
        indexes = [
            models.Index(fields=["clinic", "family_name", "given_name"], name="patient_clinic_name"),
            models.Index(fields=["clinic", "email"], name="patient_clinic_email"),
            models.Index(fields=["clinic", "created_at"], name="patient_clinic_created"),
        ]

    def __str__(self) -> str:
        return f"{self.family_name}, {self.given_name} ({self.date_of_birth:%Y-%m-%d})"

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def zone_name(self) -> str:
        return self.time_zone or self.clinic.time_zone

    @property
    def may_receive_reminders(self) -> bool:
        return bool(self.email) and self.reminder_consent and self.opted_out_at is None
