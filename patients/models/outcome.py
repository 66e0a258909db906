"""Outcome assessments (clinician and patient-reported), adverse events and photos."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

ERYTHEMA_WORDS = ["clear", "almost clear", "mild", "moderate", "severe"]
OEDEMA_WORDS = ["none", "slight", "mild", "moderate", "severe"]
GAIS_WORDS = {-1: "worse", 0: "no change", 1: "improved", 2: "much improved", 3: "very much improved"}


ALREADY_RECORDED = "Scores for this time point are already recorded; correct that entry instead."


def _in_range(field: str, low: int, high: int) -> Q:
    return Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__gte": low, f"{field}__lte": high})


class OutcomeAssessment(models.Model):
    """Scores at one time point of one treatment (and arm, for split-face treatments).

    Corrections edit the row and simple_history keeps every earlier state, so
    the original entry is never lost.  There is at most one clinician entry per
    treatment, arm, day and phase, and one patient self-report per treatment
    and day: a second entry for the same time point is a correction of the first.
    """

    class Source(models.TextChoices):
        CLINICIAN = "clinician", "Clinician"
        PATIENT = "patient", "Patient-reported"

    class Phase(models.TextChoices):
        SINGLE = "", "—"
        BEFORE = "before", "Before the procedure"
        AFTER = "after", "After the procedure"

    CLINIC_PATH = "treatment__clinic"

    treatment = models.ForeignKey("patients.Treatment", on_delete=models.PROTECT, related_name="outcomes")
    arm = models.ForeignKey("patients.TreatmentArm", null=True, blank=True, on_delete=models.PROTECT, related_name="outcomes")
    time_point_day = models.IntegerField(help_text="Days after the procedure (0 = the day of it).")
    phase = models.CharField(max_length=10, choices=Phase.choices, default=Phase.SINGLE, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.CLINICIAN)
    erythema = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(4)],
        choices=[(n, f"{n} — {word}") for n, word in enumerate(ERYTHEMA_WORDS)],
    )
    oedema = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(4)],
        choices=[(n, f"{n} — {word}") for n, word in enumerate(OEDEMA_WORDS)],
    )
    reepithelialisation_complete = models.BooleanField(null=True, blank=True)
    reepithelialisation_percent = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(100)]
    )
    pain = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(10)])
    pruritus = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(10)])
    gais = models.SmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(-1), MaxValueValidator(3)],
        choices=sorted(GAIS_WORDS.items()),
    )
    applied_as_instructed = models.BooleanField(null=True, blank=True, help_text="Patient: applied the serum as instructed?")
    problem_flagged = models.BooleanField(default=False)
    notes = models.TextField(blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Empty for patient-reported outcomes.",
    )
    recorded_at = models.DateTimeField(default=timezone.now)
    via_link = models.ForeignKey(
        "patients.PatientLink", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="For patient-reported outcomes: the signed link it was sent through.",
    )
    # A problem the patient flagged stays on the dashboard until a clinician has looked at it
    # (patients.outcomes.review_problem_flag); a correction by the patient that keeps the flag clears these.
    flag_reviewed_at = models.DateTimeField(null=True, blank=True, help_text="When staff reviewed the flagged problem.")
    flag_reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Who reviewed the problem the patient flagged.",
    )
    flag_review_note = models.TextField(blank=True, help_text="What the reviewer did about it (optional).")
    history = HistoricalRecords()

    class Meta:
        ordering = ["treatment", "time_point_day", "phase"]
        indexes = [
            models.Index(fields=["treatment", "time_point_day"], name="outcome_treatment_day"),
            models.Index(fields=["recorded_at"], name="outcome_recorded_at"),
            # The dashboard counts these per clinic on every landing: only the few still open are indexed.
            models.Index(
                fields=["treatment"], name="outcome_flag_unreviewed",
                condition=Q(source="patient", problem_flagged=True, flag_reviewed_at__isnull=True),
            ),
        ]
        constraints = [
            # Two constraints instead of one because NULL arms never collide in
            # a unique index (SQL treats NULLs as distinct).
            models.UniqueConstraint(
                fields=["treatment", "time_point_day", "phase"],
                condition=Q(source="clinician", arm__isnull=True),
                name="one_clinician_entry_per_time_point",
                violation_error_message=ALREADY_RECORDED,
            ),
            models.UniqueConstraint(
                fields=["treatment", "arm", "time_point_day", "phase"],
                condition=Q(source="clinician", arm__isnull=False),
                name="one_clinician_entry_per_arm_time_point",
                violation_error_message=ALREADY_RECORDED,
            ),
            models.UniqueConstraint(
                fields=["treatment", "time_point_day"], condition=Q(source="patient"), name="one_self_report_per_time_point",
                violation_error_message="The patient has already reported this day.",
            ),
            # The last line of defence behind the services' friendly messages.
            models.CheckConstraint(condition=_in_range("erythema", 0, 4), name="outcome_erythema_0_4"),
            models.CheckConstraint(condition=_in_range("oedema", 0, 4), name="outcome_oedema_0_4"),
            models.CheckConstraint(condition=_in_range("pain", 0, 10), name="outcome_pain_0_10"),
            models.CheckConstraint(condition=_in_range("pruritus", 0, 10), name="outcome_pruritus_0_10"),
            models.CheckConstraint(condition=_in_range("gais", -1, 3), name="outcome_gais_minus1_3"),
            models.CheckConstraint(
                condition=_in_range("reepithelialisation_percent", 0, 100), name="outcome_reepithelialisation_0_100"
            ),
        ]

    def __str__(self) -> str:
        arm = f" {self.arm.label}" if self.arm_id else ""
        phase = f" {self.phase}" if self.phase else ""
        return f"Day {self.time_point_day}{phase}{arm} ({self.get_source_display()}) for treatment {self.treatment_id}"


class ProblemFlagManager(models.Manager):
    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(source=OutcomeAssessment.Source.PATIENT, problem_flagged=True)


class ProblemFlag(OutcomeAssessment):
    """A patient's self-report with the problem box ticked, as the list of problems to review sees it.

    The same rows as ``OutcomeAssessment`` (a proxy: no table of its own), only
    the flagged self-reports, so the list of problems has its own admin page and columns.
    """

    objects = ProblemFlagManager()

    class Meta:
        proxy = True
        verbose_name = "problem flagged by a patient"
        verbose_name_plural = "problems flagged by patients"


class AdverseEvent(models.Model):
    class Kind(models.TextChoices):
        PIH = "pih", "Post-inflammatory hyperpigmentation"
        INFECTION = "infection", "Infection"
        HSV_REACTIVATION = "hsv_reactivation", "HSV reactivation"
        SCARRING = "scarring", "Scarring"
        CONTACT_DERMATITIS = "contact_dermatitis", "Contact dermatitis"
        ACNEIFORM = "acneiform_eruption", "Acneiform eruption"
        MILIA = "milia", "Milia"
        PROLONGED_ERYTHEMA = "prolonged_erythema", "Prolonged erythema"
        OTHER = "other", "Other"

    class Severity(models.TextChoices):
        MILD = "mild", "Mild"
        MODERATE = "moderate", "Moderate"
        SEVERE = "severe", "Severe"
        LIFE_THREATENING = "life_threatening", "Life-threatening"

    CLINIC_PATH = "treatment__clinic"

    treatment = models.ForeignKey("patients.Treatment", on_delete=models.PROTECT, related_name="adverse_events")
    arm = models.ForeignKey("patients.TreatmentArm", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    description = models.TextField(blank=True)
    onset_date = models.DateField()
    resolution_date = models.DateField(null=True, blank=True)
    severity = models.CharField(max_length=20, choices=Severity.choices)
    action_taken = models.TextField(blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the clinic's clinicians were emailed (moderate or worse)."
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-onset_date"]
        indexes = [models.Index(fields=["treatment", "arm"], name="adverse_event_treatment_arm")]
        constraints = [
            models.CheckConstraint(
                condition=Q(resolution_date__isnull=True) | Q(resolution_date__gte=F("onset_date")),
                name="adverse_event_resolves_after_onset",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.get_severity_display().lower()}), onset {self.onset_date:%Y-%m-%d}"


def photo_path(instance: OutcomePhoto, filename: str) -> str:
    return f"photos/{instance.assessment.treatment.clinic_id}/{instance.assessment.treatment_id}/{instance.opaque_name}"


def thumbnail_path(instance: OutcomePhoto, filename: str) -> str:
    return f"photos/{instance.assessment.treatment.clinic_id}/{instance.assessment.treatment_id}/thumb-{instance.opaque_name}"


class OutcomePhoto(models.Model):
    """A photo attached to an assessment. Stored privately; served only by a staff view that checks the clinic."""

    CLINIC_PATH = "assessment__treatment__clinic"

    assessment = models.ForeignKey(OutcomeAssessment, on_delete=models.PROTECT, related_name="photos")
    image = models.FileField(upload_to=photo_path)
    thumbnail = models.FileField(upload_to=thumbnail_path, blank=True)
    opaque_name = models.CharField(max_length=80, editable=False)
    content_type = models.CharField(max_length=40)
    size_bytes = models.PositiveIntegerField(default=0)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Empty when the patient uploaded it through their link.",
    )
    uploaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["assessment", "uploaded_at"]

    def __str__(self) -> str:
        return f"Photo {self.pk} of {self.assessment}"
