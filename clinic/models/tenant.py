"""The tenant: a clinic, and which staff belong to it in which role."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords


def validate_time_zone(value: str) -> None:
    if value not in available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone such as Europe/Berlin.")


PHONE_CHARACTERS = re.compile(r"[0-9 +\-()]+")
PHONE_MIN_DIGITS, PHONE_MAX_DIGITS = 6, 20


def validate_phone(value: str) -> None:
    """A number as people type it: digits, spaces, ``+``, ``-`` and parentheses, with 6 to 20 digits."""
    if not PHONE_CHARACTERS.fullmatch(value):
        raise ValidationError(
            f"{value!r} is not a phone number: use only digits, spaces, +, - and parentheses, such as +44 20 7946 0000."
        )
    digits = sum(char.isdigit() for char in value)
    if not PHONE_MIN_DIGITS <= digits <= PHONE_MAX_DIGITS:
        raise ValidationError(
            f"A phone number has {PHONE_MIN_DIGITS} to {PHONE_MAX_DIGITS} digits; {value!r} has {digits}."
        )


def tel_href(number: str) -> str:
    """The ``tel:`` address of a number as typed: only a leading ``+`` and the digits, which every phone dials.

    In an international number a trunk zero written as ``(0)`` (``+44 (0)20 …``) is not dialled: kept, the call fails.
    """
    international = number.strip().startswith("+")
    if international:
        number = re.sub(r"\(\s*0\s*\)", "", number)
    digits = "".join(char for char in number if char.isdigit())
    return f"tel:+{digits}" if international else f"tel:{digits}"


# How old intake answers may be before a screening asks to re-confirm them. Plausibility limits against typing
# mistakes (0 days, 100000 days), not clinical advice: within them each clinic sets its own age.
INTAKE_MAX_AGE_DAYS_MIN = 1
INTAKE_MAX_AGE_DAYS_MAX = 365
INTAKE_MAX_AGE_MESSAGE = (
    f"Give a number of days from {INTAKE_MAX_AGE_DAYS_MIN} to {INTAKE_MAX_AGE_DAYS_MAX} "
    "(a year at most; the default is 30)."
)


# Callables, not fixed times: Django's check fields.W161 takes a fixed time default within ten seconds of
# the clock for a mistaken "now", so `check --deploy` failed when it ran at 20:59:55 or 07:59:55.
def default_quiet_hours_start() -> dt.time:
    return dt.time(21, 0)


def default_quiet_hours_end() -> dt.time:
    return dt.time(8, 0)


class Clinic(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    time_zone = models.CharField(max_length=64, default="Europe/London", validators=[validate_time_zone])
    contact_email = models.EmailField()
    urgent_phone = models.CharField(
        max_length=40, blank=True, validators=[validate_phone],
        help_text="The number patients call when something is urgent after a procedure (spreading redness, pus, "
                  "fever, severe pain). Shown on their self-report pages and in reminder emails.",
    )
    sender_name = models.CharField(max_length=120, help_text="Shown as the sender of patient emails.")
    quiet_hours_start = models.TimeField(
        default=default_quiet_hours_start, help_text="No reminder is sent from this patient-local time…"
    )
    quiet_hours_end = models.TimeField(default=default_quiet_hours_end, help_text="…until this patient-local time.")
    intake_max_age_days = models.PositiveSmallIntegerField(
        default=30,
        validators=[
            MinValueValidator(INTAKE_MAX_AGE_DAYS_MIN, message=INTAKE_MAX_AGE_MESSAGE),
            MaxValueValidator(INTAKE_MAX_AGE_DAYS_MAX, message=INTAKE_MAX_AGE_MESSAGE),
        ],
        help_text="Intake answers older than this must be re-confirmed before a screening counts.",
    )
    require_two_factor = models.BooleanField(
        default=True, help_text="Staff of this clinic must use a one-time-password device to sign in."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def urgent_phone_href(self) -> str:
        """The ``tel:`` link of :attr:`urgent_phone`, or "" when the clinic has not given one."""
        return tel_href(self.urgent_phone) if self.urgent_phone else ""

    def clean(self) -> None:
        if self.quiet_hours_start == self.quiet_hours_end:
            raise ValidationError({"quiet_hours_end": "Quiet hours must start and end at different times."})


class Role(models.TextChoices):
    CLINIC_ADMIN = "clinic_admin", "Clinic admin"
    CLINICIAN = "clinician", "Clinician"
    COORDINATOR = "coordinator", "Coordinator"
    AUDITOR = "auditor", "Auditor"


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "clinic"], name="one_membership_per_clinic")]
        ordering = ["clinic__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} at {self.clinic}"
