"""A patient of one clinic."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from clinic.models.tenant import validate_phone, validate_time_zone

# No patient alive was born before this: an earlier date is a typing mistake (1091 for 1991).
EARLIEST_DATE_OF_BIRTH = dt.date(1900, 1, 1)
# The admin's "Now" button takes the browser's clock, which may run a little ahead of the server's.
CLOCK_TOLERANCE = dt.timedelta(minutes=5)

# Patients whose consent box is ticked but whose consent is not on record: saved
# before the rule that asks when and how (patient_errors), they are refused on
# their next edit until filled in. Their reminders still go out — the patient
# did consent, the record is what is missing — so staff are shown how many.
CONSENT_UNRECORDED = models.Q(reminder_consent=True) & (
    models.Q(consent_at__isnull=True) | models.Q(consent_source="")
)


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
    phone = models.CharField(max_length=40, blank=True, validators=[validate_phone])
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

    def clean(self) -> None:
        errors = patient_errors(
            clinic_zone=self.clinic.time_zone if self.clinic_id else settings.TIME_ZONE,
            date_of_birth=self.date_of_birth, reminder_consent=self.reminder_consent,
            consent_at=self.consent_at, consent_source=self.consent_source,
        )
        if errors:
            raise ValidationError(errors)

    @property
    def consent_unrecorded(self) -> bool:
        """Consent ticked without when or how it was given (see CONSENT_UNRECORDED)."""
        return self.reminder_consent and (self.consent_at is None or not self.consent_source)

    @property
    def may_receive_reminders(self) -> bool:
        return bool(self.email) and self.reminder_consent and self.opted_out_at is None


def patient_errors(
    *,
    clinic_zone: str,
    date_of_birth: dt.date | None,
    reminder_consent: bool,
    consent_at: dt.datetime | None,
    consent_source: str,
    now: dt.datetime | None = None,
) -> dict[str, list[str]]:
    """What is wrong with a patient's birth date and reminder consent, by field (empty when nothing).

    A birth date is judged against the clinic's date. Consent to email
    reminders is only on record with when and how it was given: an auditor
    asks for both, and reminders go out on its strength.
    """
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}
    if isinstance(date_of_birth, dt.date):
        today = now.astimezone(ZoneInfo(clinic_zone)).date()
        if date_of_birth > today:
            errors["date_of_birth"] = [f"The date of birth cannot be after today ({today:%Y-%m-%d})."]
        elif date_of_birth < EARLIEST_DATE_OF_BIRTH:
            errors["date_of_birth"] = [f"The date of birth cannot be before {EARLIEST_DATE_OF_BIRTH:%Y}; check the year."]
    if reminder_consent:
        if consent_at is None:
            errors["consent_at"] = ["Say when the patient consented to email reminders (the date the form was signed)."]
        if not consent_source:
            errors["consent_source"] = ["Say how the patient gave consent."]
    if isinstance(consent_at, dt.datetime) and consent_at > now + CLOCK_TOLERANCE:
        errors.setdefault("consent_at", []).append("Consent cannot be dated in the future.")
    return errors
