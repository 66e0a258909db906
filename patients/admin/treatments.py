"""Admin pages: treatments (recorded through the service, with their timeline) and the reminder outbox.

Thin: ``patients.treatments`` records, reschedules and cancels treatments and
resends or cancels one reminder; these pages collect input and show results.
A recorded treatment is a clinical record: its page is read-only, and the
procedure time changes only through "Reschedule", which moves the reminders too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.forms import formset_factory
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from clinic.admin_base import ClinicScopedAdmin, ScopedInline
from clinic.ids import row_id
from clinic.models import Clinic
from clinic.roles import Capability
from clinic.scoping import can, can_anywhere, scoped
from clinic.words import counted
from patients import outcomes, treatments
from patients.admin.flags import reviewed_words
from patients.admin.visits import MoveVisitForm, StepDayFilter, StepKindFilter
from patients.models import ExosomeApplication, OutcomeAssessment, Patient, Reminder, Screening, Treatment, TreatmentArm
from patients.reminders import email_block_reason
from patients.screenings import (
    SCREENING_VALID_FOR,
    assert_screening_usable,
    unusable_version_error,
    version_usable_by,
    versions_usable_by,
)
from protocols.models import ExosomeProduct, ProductLot

DATETIME_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


# --- forms --------------------------------------------------------------------------------


class ChoosePatientForm(forms.Form):
    patient = forms.ModelChoiceField(queryset=Patient.objects.none(), label="Patient")

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["patient"].queryset = scoped(
            Patient.objects.select_related("clinic"), user, Capability.RECORD_TREATMENT
        )


def allowing_screenings(patient: Patient) -> list[int]:
    """Ids of the patient's screenings that allow a treatment now (outcome, override, age), whatever their day.

    A procedure done yesterday is recorded today on yesterday's screening: the
    service then refuses a screening planned for another day than the procedure's.
    """
    allowed = []
    now = timezone.now()
    # Only screenings for a version still published: one retired since cannot clear a new treatment.
    screenings = Screening.objects.filter(
        patient=patient, protocol_version__in=versions_usable_by(patient.clinic)
    ).select_related("protocol_version")
    for screening in screenings:
        try:
            assert_screening_usable(
                screening=screening, patient=patient, protocol_version=screening.protocol_version, on=now
            )
        except ValidationError:
            continue
        allowed.append(screening.pk)
    return allowed


class AllowingScreeningField(forms.ModelChoiceField):
    """The patient's screenings that allow treatment: one that needed an override is listed as overridden."""

    #: whose screenings, set by the form: a choice no longer offered is explained from the patient's screening
    patient: Patient | None = None

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except ValidationError:
            raise ValidationError(self._why_not_offered(value), code="invalid_choice") from None

    def _why_not_offered(self, value: Any) -> str:
        """Why the patient's screening ``value`` (chosen on a page opened earlier) can no longer clear a treatment."""
        screening = None
        screening_id = row_id(str(value))
        if self.patient is not None and screening_id is not None:
            screening = Screening.objects.filter(patient=self.patient, pk=screening_id).select_related("protocol_version").first()
        if screening is None:
            return "Choose one of this patient's screenings listed."
        if not version_usable_by(self.patient.clinic, screening.protocol_version):
            return unusable_version_error(self.patient.clinic, screening.protocol_version)
        try:
            assert_screening_usable(screening=screening, patient=self.patient,
                                    protocol_version=screening.protocol_version, on=timezone.now())
        except ValidationError as refused:
            return refused.messages[0]
        return "Choose one of this patient's screenings listed."

    def label_from_instance(self, obj: Screening) -> str:
        # Listed at all, a screening that needed an override has one.
        outcome = "Overridden" if obj.outcome == Screening.Outcome.NEEDS_OVERRIDE else obj.get_outcome_display()
        return (f"Screening for {obj.protocol_version}, run {timezone.localtime(obj.run_at):%Y-%m-%d %H:%M} "
                f"for a procedure on {obj.planned_for:%Y-%m-%d}: {outcome}")


class RecordTreatmentForm(forms.Form):
    #: the service's field → this form's: the protocol version is the chosen screening's
    service_fields = {"protocol_version": "screening"}

    screening = AllowingScreeningField(
        queryset=Screening.objects.none(),
        help_text=("Only this patient's screenings that allow treatment (clear, caution or overridden; under 30 days "
                   "old). It must have been run, and overridden if needed, before the procedure started, for a "
                   "procedure on the day it started."),
    )
    started_at = forms.DateTimeField(widget=DATETIME_INPUT, label="Procedure started")
    ended_at = forms.DateTimeField(widget=DATETIME_INPUT, label="Procedure ended", help_text="Steps count from here.")
    areas = forms.CharField(max_length=200, help_text="e.g. full face, perioral")
    device = forms.CharField(max_length=120, required=False)
    needle_depth_mm = forms.DecimalField(max_digits=4, decimal_places=2, required=False, label="Needle depth (mm)")
    energy = forms.CharField(max_length=60, required=False, help_text="e.g. 15 mJ, 40 W")
    density = forms.CharField(max_length=60, required=False, help_text="e.g. 5 %, 100 spots/cm²")
    passes = forms.IntegerField(min_value=1, required=False)
    settings_notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def __init__(self, *args: Any, patient: Patient, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["screening"].queryset = Screening.objects.filter(pk__in=allowing_screenings(patient)).select_related(
            "protocol_version__protocol"
        )
        self.fields["screening"].patient = patient
        zone = patient.clinic.time_zone
        for name in ("started_at", "ended_at"):
            self.fields[name].help_text = f"{self.fields[name].help_text} Clinic time ({zone}).".strip()


def earliest_procedure_day(clinic: Clinic) -> dt.date:
    """The clinic's date of the earliest procedure the record form can take.

    The form offers only screenings that still allow treatment now (at most
    ``SCREENING_VALID_FOR`` old), and a procedure starts after its screening.
    """
    earliest_start = timezone.now() - SCREENING_VALID_FOR
    return earliest_start.astimezone(ZoneInfo(clinic.time_zone)).date()


def recall_notice(lot: ProductLot) -> str:
    """What staff read when a treatment used a lot recalled after it was applied."""
    return (f"Lot {lot.lot_number} of {lot.product.name} was recalled on {lot.recall_day():%Y-%m-%d} "
            f"({lot.recall_reason}). This patient received it before the recall and is on the lot's list of "
            "applications: follow the clinic's recall procedure.")


class LotChoiceField(forms.ModelChoiceField):
    """Lots by name; one recalled since names the day, so it is only picked for a procedure before the recall."""

    def label_from_instance(self, obj: ProductLot) -> str:
        day = obj.recall_day() if obj.recalled else None
        return f"{obj} — recalled {day:%Y-%m-%d}, only for a procedure before the recall" if day else str(obj)


class ApplicationForm(forms.Form):
    lot = LotChoiceField(
        queryset=ProductLot.objects.none(),
        help_text="The lot must be in date on the day of the procedure; a recalled lot only if it was applied "
        "before the recall was entered.",
    )
    volume_ml = forms.DecimalField(
        max_digits=5, decimal_places=2, label="Volume (ml)",
        help_text=f"More than 0, at most {treatments.MAX_APPLICATION_VOLUME_ML} ml.",
    )
    # No initial value: an untouched extra row must stay "unchanged" so the formset skips it.
    minutes_after_procedure = forms.IntegerField(
        required=False,
        help_text=f"Empty means right after; at most {treatments.MAX_APPLICATION_MINUTES_AFTER} (24 hours).",
    )
    arm = forms.CharField(max_length=40, required=False, help_text="Split-face only: the arm's label.")

    def __init__(self, *args: Any, patient: Patient, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A procedure may be recorded days after it was done: offer every lot that was in date on some
        # day the form accepts, and let the service judge the lot on the procedure's own day (it says
        # "expired on …" where a missing choice would only say "Select a valid choice").
        # A lot recalled since the earliest such procedure is offered too: one applied before its recall
        # must be recorded with it, or the patient would be missing from the recall's list.
        not_recalled_then = models.Q(recalled=False) | models.Q(recalled_at__gt=timezone.now() - SCREENING_VALID_FOR)
        self.fields["lot"].queryset = ProductLot.objects.filter(
            not_recalled_then, clinic=patient.clinic, expiry_date__gte=earliest_procedure_day(patient.clinic)
        ).select_related("product", "clinic")

    # The service's own checks, so the message stands next to the field it is about.
    def clean_volume_ml(self) -> Any:
        return _service_checked(self.cleaned_data["volume_ml"], treatments.volume_problem)

    def clean_minutes_after_procedure(self) -> Any:
        minutes = self.cleaned_data["minutes_after_procedure"]
        return minutes if minutes is None else _service_checked(minutes, treatments.minutes_after_problem)


def _service_checked(value: Any, problem_of: Any) -> Any:
    problem = problem_of(value)
    if problem:
        raise ValidationError(problem[0].upper() + problem[1:])
    return value


class ArmForm(forms.Form):
    label = forms.CharField(max_length=40, help_text="e.g. left, right")
    is_control = forms.BooleanField(required=False, label="Control")
    product = forms.ModelChoiceField(queryset=ExosomeProduct.objects.none(), required=False)
    control_description = forms.CharField(max_length=200, required=False, help_text="e.g. saline")

    def __init__(self, *args: Any, patient: Patient, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["product"].queryset = ExosomeProduct.objects.filter(
            models.Q(clinic=patient.clinic) | models.Q(clinic__isnull=True), is_active=True
        )


ApplicationFormSet = formset_factory(ApplicationForm, extra=2)
ArmFormSet = formset_factory(ArmForm, extra=2, max_num=2)


class RescheduleForm(forms.Form):
    started_at = forms.DateTimeField(widget=DATETIME_INPUT, label="Procedure started")
    ended_at = forms.DateTimeField(widget=DATETIME_INPUT, label="Procedure ended")


class CancelTreatmentForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=(f"Why, in a few words (at least {treatments.CANCEL_REASON_MIN_LENGTH} characters), e.g. “recorded "
                   "on the wrong patient”. Kept with the treatment's history; cancelling cannot be undone."),
    )


def _filled(formset: forms.BaseFormSet) -> list[dict[str, Any]]:
    return [form.cleaned_data for form in formset if form.has_changed() and form.cleaned_data]


def apply_service_errors(error: ValidationError, form: forms.Form) -> list[str]:
    """Put a service's field errors on ``form``; return the ones that belong to no field of it."""
    leftover = []
    aliases = getattr(form, "service_fields", {})
    for name, messages_ in error.message_dict.items():
        name = aliases.get(name, name)
        for message in messages_:
            if name in form.fields:
                form.add_error(name, message)
            else:
                leftover.append(f"{name.replace('_', ' ').capitalize()}: {message}")
    return leftover


def link_existing_treatment(error: ValidationError) -> ValidationError:
    """The service's field errors, where the one refusing a used screening links to the treatment it names."""
    if not hasattr(error, "error_dict"):
        return error
    return ValidationError({name: [_linked(item) for item in items] for name, items in error.error_dict.items()})


def _linked(error: ValidationError) -> ValidationError:
    if error.code != treatments.SCREENING_USED:
        return error
    # The message's "%(treatment)s" becomes a link to it; format_html escapes the rest.
    before, after = error.message.split("%(treatment)s", 1)
    url = reverse("admin:patients_treatment_change", args=[error.params["treatment_id"]])
    return ValidationError(
        format_html('{}<a href="{}">{}</a>{}', before % error.params, url, error.params["treatment"],
                    after % error.params),
        code=error.code,
    )


def recomputed_summary(result: treatments.Recomputed) -> str:
    """What became of the reminders that had not gone out, e.g. "3 reminders moved to the new times"."""
    summary = f"{counted(result.scheduled, 'reminder')} moved to the new times"
    if result.revived:
        summary += f" ({result.revived} of them had been skipped as too late)"
    if result.past:
        summary += f"; {result.past} skipped: already past at the new times"
    return summary


def patient_reports(treatment: Treatment) -> list[OutcomeAssessment]:
    """The patient's self-reports of the treatment, by day, with their photos and reviewer: two queries.

    Each carries ``redness_word``: the word the patient chose from (their scale, not the clinician's CEA),
    ``sent_at``: when the patient last sent the answers shown, and ``corrected``: whether those differ from
    the answers first sent (``recorded_at``).
    """
    reports = list(
        OutcomeAssessment.objects.filter(treatment=treatment, source=OutcomeAssessment.Source.PATIENT)
        .select_related("flag_reviewed_by")
        .prefetch_related("photos")
        .order_by("time_point_day", "pk")
    )
    submissions = outcomes.patient_submissions(reports)
    for report in reports:
        report.redness_word = outcomes.patient_redness_word(report.erythema)
        report.sent_at, report.corrected = submissions.get(report.pk, (report.recorded_at, False))
    return reports


# --- inlines (read-only on the treatment page) ----------------------------------------------


class ApplicationInline(ScopedInline):
    model = ExosomeApplication
    # A plain table: Django's tabular inline captions each row with the object's name ("2.50 ml of lot …").
    template = "admin/patients/treatment/readonly_inline.html"
    empty_text = "No exosome applications recorded."
    fields = ["arm", "lot", "volume_ml", "minutes_after_procedure", "applied_by"]
    readonly_fields = fields
    change_capability = Capability.RECORD_TREATMENT

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ArmInline(ApplicationInline):
    model = TreatmentArm
    empty_text = "No arms (one product on the whole area)."
    fields = ["label", "is_control", "product", "control_description"]
    readonly_fields = fields


# --- the treatment admin ----------------------------------------------------------------------


@admin.register(Treatment)
class TreatmentAdmin(ClinicScopedAdmin):
    change_capability = Capability.RECORD_TREATMENT
    log_views = True  # device settings, lots and the timeline of one patient
    change_form_template = "admin/patients/treatment/change_form.html"
    list_display = ["ended_at", "patient", "protocol_version", "clinician", "status", "reminder_summary"]
    # "patient" lets the patient page link here: ?patient__id__exact=<id>
    list_filter = ["patient", "status", "protocol_version"]
    search_fields = ["patient__family_name", "patient__given_name", "patient__reference"]
    date_hierarchy = "ended_at"
    inlines = [ArmInline, ApplicationInline]
    fields = [
        "clinic", "patient", "protocol_version", "screening", "clinician", "started_at", "ended_at", "areas",
        "device", "needle_depth_mm", "energy", "density", "passes", "settings_notes", "status", "cancelled_at",
        "cancelled_by", "cancel_reason", "created_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        counted = {
            f"reminders_{name}": models.Count("reminders", filter=models.Q(reminders__status__in=statuses))
            for name, statuses in (
                ("sent", [Reminder.Status.SENT]), ("failed", [Reminder.Status.FAILED]), ("pending", Reminder.PENDING)
            )
        }
        return (
            super().get_queryset(request)
            .select_related("patient", "protocol_version__protocol", "clinician")
            .annotate(**counted)
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The record itself is never edited in a form; reschedule and cancel are their own pages.
        return False if obj is not None else super().has_change_permission(request, obj)

    @admin.display(description="Reminders")
    def reminder_summary(self, treatment: Treatment) -> str:
        # Counted in the changelist query (get_queryset), not one query per row.
        sent, failed, pending = treatment.reminders_sent, treatment.reminders_failed, treatment.reminders_pending
        if failed:
            return format_html('{} sent, {} pending, <strong class="errornote">{} failed</strong>', sent, pending, failed)
        return f"{sent} sent, {pending} pending"

    # --- pages ------------------------------------------------------------------------------
    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        # The reminder action comes first: "<path:object_id>/cancel/" would swallow it; moving a visit before
        # it, whose "<str:what>" would swallow "move-visit".
        return [
            path(
                "<path:object_id>/reminders/<int:reminder_id>/move-visit/",
                wrap(self.move_visit_view), name="patients_treatment_move_visit",
            ),
            path(
                "<path:object_id>/reminders/<int:reminder_id>/<str:what>/",
                wrap(self.reminder_action_view), name="patients_treatment_reminder_action",
            ),
            path(
                "<path:object_id>/patient-reports/<int:report_id>/review/",
                wrap(self.review_flag_view), name="patients_treatment_review_flag",
            ),
            path("<path:object_id>/reschedule/", wrap(self.reschedule_view), name="patients_treatment_reschedule"),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name="patients_treatment_cancel"),
            *super().get_urls(),
        ]

    def _treatment_or_404(self, request: HttpRequest, object_id: str) -> Treatment:
        treatment = self.get_object(request, object_id)  # scoped: another clinic's treatment is a 404
        if treatment is None:
            raise Http404("No such treatment.")
        return treatment

    def _page(self, request: HttpRequest, template: str, title: str, *, status: int = 200, **context: Any) -> HttpResponse:
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": title, **context}
        return TemplateResponse(request, template, context, status=status)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        treatment = self.get_object(request, object_id)
        if treatment is not None:
            clinic = treatment.clinic
            extra_context = {
                **(extra_context or {}),
                "timeline": treatments.timeline_for(treatment=treatment),
                "patient_zone": treatment.patient.zone_name,
                "can_manage_reminders": can(request.user, Capability.MANAGE_REMINDERS, clinic),
                "can_record": can(request.user, Capability.RECORD_TREATMENT, clinic),
                "can_log_outcomes": can(request.user, Capability.LOG_OUTCOMES, clinic),
                "is_cancelled": treatment.status == Treatment.Status.CANCELLED,
                "email_blocked": email_block_reason(treatment.patient),
                "recalled_lots": treatments.recalled_lots(treatment),
                "patient_reports": patient_reports(treatment),
                "can_review_flags": outcomes.may_review_flags(request.user, clinic),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def review_flag_view(self, request: HttpRequest, object_id: str, report_id: int) -> HttpResponse:
        """"Mark reviewed" on a patient's report that flagged a problem (POST; the note is optional)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        treatment = self._treatment_or_404(request, object_id)
        report = OutcomeAssessment.objects.filter(
            treatment=treatment, pk=report_id, source=OutcomeAssessment.Source.PATIENT
        ).select_related("treatment__clinic").first()
        if report is None:
            raise Http404("No such report.")
        back = reverse("admin:patients_treatment_change", args=[treatment.pk]) + "#patient-reports"
        try:
            reviewed = outcomes.review_problem_flag(
                assessment=report, by=request.user, note=request.POST.get("note", ""), request=request
            )
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages) + " Nothing was saved.", messages.ERROR)
            return HttpResponseRedirect(back)
        if reviewed:
            self.message_user(request, f"The problem the patient flagged on day {report.time_point_day} is marked reviewed.")
        else:
            self.message_user(
                request, f"{reviewed_words(report)} already; that review stays.", messages.INFO,
            )
        return HttpResponseRedirect(back)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        """Record a treatment: first choose the patient, then the screening, procedure and applications."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        patient_id = request.GET.get("patient") or request.POST.get("patient")
        if not patient_id:
            chooser = ChoosePatientForm(user=request.user)
            return self._page(request, "admin/patients/treatment/record.html", "Record a treatment", chooser=chooser)
        chooser = ChoosePatientForm({"patient": patient_id}, user=request.user)
        if not chooser.is_valid():
            return self._page(
                request, "admin/patients/treatment/record.html", "Record a treatment", chooser=chooser, status=400
            )
        patient = chooser.cleaned_data["patient"]
        # Staff type the procedure time on the clinic's clock.
        with timezone.override(ZoneInfo(patient.clinic.time_zone)):
            return self._record(request, patient)

    def _record(self, request: HttpRequest, patient: Patient) -> HttpResponse:
        data = request.POST if request.method == "POST" else None
        # "Record a treatment…" on a screening page names the screening to start from.
        form = RecordTreatmentForm(data, patient=patient, initial={"screening": request.GET.get("screening")})
        applications = ApplicationFormSet(data, prefix="applications", form_kwargs={"patient": patient})
        arms = ArmFormSet(data, prefix="arms", form_kwargs={"patient": patient})
        other_errors: list[str] = []
        if data is not None and form.is_valid() and applications.is_valid() and arms.is_valid():
            try:
                treatment = self._record_through_service(request, patient, form, applications, arms)
            except ValidationError as error:
                other_errors = apply_service_errors(link_existing_treatment(error), form)
            else:
                self.message_user(request, f"Treatment recorded with {counted(treatment.reminders.count(), 'reminder')}.")
                for lot in treatments.recalled_lots(treatment):
                    self.message_user(request, recall_notice(lot), messages.WARNING)
                return HttpResponseRedirect(reverse("admin:patients_treatment_change", args=[treatment.pk]))
        return self._page(
            request, "admin/patients/treatment/record.html", f"Record a treatment for {patient.full_name}",
            patient=patient, form=form, applications=applications, arms=arms, other_errors=other_errors,
            status=400 if data is not None else 200,
        )

    def _record_through_service(
        self, request: HttpRequest, patient: Patient, form: RecordTreatmentForm,
        applications: forms.BaseFormSet, arms: forms.BaseFormSet,
    ) -> Treatment:
        data = dict(form.cleaned_data)
        screening = data.pop("screening")
        return treatments.record_treatment(
            patient=patient, protocol_version=screening.protocol_version, screening=screening,
            clinician=request.user, request=request,
            applications=[
                treatments.ApplicationInput(
                    lot=item["lot"], volume_ml=item["volume_ml"],
                    minutes_after_procedure=item.get("minutes_after_procedure") or 0, arm_label=item.get("arm") or "",
                )
                for item in _filled(applications)
            ],
            arms=[
                treatments.ArmInput(
                    label=item["label"], is_control=item.get("is_control", False), product=item.get("product"),
                    control_description=item.get("control_description", ""),
                )
                for item in _filled(arms)
            ],
            **data,
        )

    def reschedule_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        treatment = self._treatment_or_404(request, object_id)
        if not can(request.user, Capability.RECORD_TREATMENT, treatment.clinic):
            raise PermissionDenied
        with timezone.override(ZoneInfo(treatment.clinic.time_zone)):
            initial = {"started_at": timezone.localtime(treatment.started_at), "ended_at": timezone.localtime(treatment.ended_at)}
            form = RescheduleForm(request.POST or None, initial=initial)
            other_errors: list[str] = []
            if request.method == "POST" and form.is_valid():
                try:
                    result = treatments.reschedule_treatment(
                        treatment=treatment, by=request.user, request=request, **form.cleaned_data
                    )
                except ValidationError as error:
                    other_errors = apply_service_errors(error, form)
                else:
                    self.message_user(request, f"Procedure time changed; {recomputed_summary(result)}.")
                    return HttpResponseRedirect(reverse("admin:patients_treatment_change", args=[treatment.pk]))
            return self._page(
                request, "admin/patients/treatment/action_form.html", "Reschedule the procedure",
                treatment=treatment, form=form, other_errors=other_errors, submit_label="Reschedule",
                intro=("Correct when the procedure happened. Reminders not yet sent move with it; sent ones stay as "
                       "they are. The procedure stays on the day its screening was run for: if it was done on "
                       "another day, screen the patient again for that day and record the treatment on the new "
                       "screening, then cancel this one."),
                status=400 if request.method == "POST" else 200,
            )

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        treatment = self._treatment_or_404(request, object_id)
        if not can(request.user, Capability.RECORD_TREATMENT, treatment.clinic):
            raise PermissionDenied
        if treatment.status == Treatment.Status.CANCELLED:
            when = timezone.localtime(treatment.cancelled_at, ZoneInfo(treatment.clinic.time_zone))
            self.message_user(request, f"This treatment was already cancelled on {when:%Y-%m-%d %H:%M} by "
                                       f"{treatment.cancelled_by}: {treatment.cancel_reason}", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:patients_treatment_change", args=[treatment.pk]))
        form = CancelTreatmentForm(request.POST or None)
        other_errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            try:
                cancelled = treatments.cancel_treatment(
                    treatment=treatment, by=request.user, reason=form.cleaned_data["reason"], request=request
                )
            except ValidationError as error:
                other_errors = apply_service_errors(error, form)
            else:
                self.message_user(request, f"Treatment cancelled; {counted(cancelled, 'pending reminder')} cancelled.")
                return HttpResponseRedirect(reverse("admin:patients_treatment_change", args=[treatment.pk]))
        return self._page(
            request, "admin/patients/treatment/action_form.html", "Cancel the treatment",
            treatment=treatment, form=form, other_errors=other_errors, submit_label="Cancel treatment",
            intro="The treatment stays on record as cancelled; reminders that have not gone out are cancelled.",
            status=400 if request.method == "POST" else 200,
        )

    def reminder_action_view(self, request: HttpRequest, object_id: str, reminder_id: int, what: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        treatment = self._treatment_or_404(request, object_id)
        reminder = Reminder.objects.filter(treatment=treatment, pk=reminder_id).select_related("treatment__patient").first()
        services = {"resend": treatments.resend_reminder, "cancel": treatments.cancel_reminder}
        if reminder is None or what not in services:
            raise Http404("No such reminder.")
        try:
            changed = services[what](reminder=reminder, by=request.user, request=request)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
        else:
            self.message_user(request, f"The reminder “{reminder.step.title}” {_what_became(changed, what)}.")
        return HttpResponseRedirect(reverse("admin:patients_treatment_change", args=[treatment.pk]) + "#timeline")

    def move_visit_view(self, request: HttpRequest, object_id: str, reminder_id: int) -> HttpResponse:
        """"Move visit…": the new date and time of one follow-up visit, on the clinic's clock, and why."""
        treatment = self._treatment_or_404(request, object_id)
        reminder = Reminder.objects.filter(treatment=treatment, pk=reminder_id).select_related("step").first()
        if reminder is None:
            raise Http404("No such reminder.")
        if not can(request.user, Capability.MANAGE_REMINDERS, treatment.clinic):
            raise PermissionDenied
        reminder.treatment = treatment
        back = reverse("admin:patients_treatment_change", args=[treatment.pk]) + "#timeline"
        # The visit happens at the clinic: its time is typed and shown on the clinic's clock.
        clinic_zone, patient_zone = ZoneInfo(treatment.clinic.time_zone), ZoneInfo(treatment.patient.zone_name)
        with timezone.override(clinic_zone):
            form = MoveVisitForm(request.POST or None, initial={"occurs_at": timezone.localtime(reminder.occurs_at)})
            form.fields["occurs_at"].help_text = f"On the clinic's clock ({clinic_zone.key})."
            other_errors: list[str] = []
            if request.method == "POST" and form.is_valid():
                values = dict(form.cleaned_data)
                if values.pop("confirmed_for") != request.POST.get("occurs_at", ""):
                    values["confirm_time"] = False  # ticked for the time the page asked about, not this one
                try:
                    moved = treatments.move_visit(reminder=reminder, by=request.user, request=request, **values)
                except ValidationError as error:
                    other_errors = apply_service_errors(error, form)
                    if "confirm_time" in form.errors:  # what the box, if ticked next, confirms
                        form.data = form.data.copy()
                        form.data["confirmed_for"] = request.POST.get("occurs_at", "")
                        form.data.pop("confirm_time", None)
                else:
                    doubts = _confirmed_doubts(moved)
                    self.message_user(request, _visit_moved_message(moved, clinic_zone, patient_zone) + doubts,
                                      messages.WARNING if doubts else messages.INFO)
                    return HttpResponseRedirect(back)
            if "confirm_time" not in form.errors:
                del form.fields["confirm_time"]
            return self._page(
                request, "admin/patients/treatment/action_form.html", f"Move the visit “{reminder.step.title}”",
                treatment=treatment, form=form, other_errors=other_errors, submit_label="Move visit",
                intro=_move_visit_intro(reminder, clinic_zone, patient_zone),
                status=400 if request.method == "POST" else 200,
            )


def _on_clocks(moment: dt.datetime, clinic_zone: ZoneInfo, patient_zone: ZoneInfo) -> str:
    """``moment`` on the clinic's clock, and on the patient's (which their email shows) when it reads differently."""
    clinic_time = timezone.localtime(moment, clinic_zone)
    text = f"{clinic_time:%a %Y-%m-%d %H:%M} (clinic's time)"
    patient_time = timezone.localtime(moment, patient_zone)
    if patient_time.replace(tzinfo=None) != clinic_time.replace(tzinfo=None):
        text += f", {patient_time:%a %Y-%m-%d %H:%M} on the patient's clock ({patient_zone.key})"
    return text


def _move_visit_intro(reminder: Reminder, clinic_zone: ZoneInfo, patient_zone: ZoneInfo) -> str:
    sent = (" Its reminder was sent: the patient is emailed again with the new time, and the invitation moves the "
            "event in their calendar." if reminder.status == Reminder.Status.SENT else "")
    return (f"The visit is now on {_on_clocks(reminder.occurs_at, clinic_zone, patient_zone)}. Its reminder goes "
            f"out as long before the new time as the protocol says, outside the quiet hours.{sent} Moving the "
            "procedure's time later leaves the visit at the time given here.")


def _visit_moved_message(reminder: Reminder, clinic_zone: ZoneInfo, patient_zone: ZoneInfo) -> str:
    due = timezone.localtime(reminder.due_at, patient_zone)
    return (f"The visit “{reminder.step.title}” moved to {_on_clocks(reminder.occurs_at, clinic_zone, patient_zone)}; "
            f"its reminder goes out {due:%a %Y-%m-%d %H:%M} (patient's time).")


def _confirmed_doubts(reminder: Reminder) -> str:
    """What staff confirmed about the new time (``treatments.move_doubts``), said again once it is moved."""
    text = ""
    if reminder.due_at > reminder.occurs_at:
        text += " That is after the visit itself (the quiet hours hold it back): tell the patient yourself."
    if treatments.at_night(reminder.treatment, reminder.occurs_at):
        text += " The visit is at night on the clinic's clock."
    return text


def _what_became(reminder: Reminder, what: str) -> str:
    if what == "cancel":
        return "was cancelled"
    if reminder.due_at > timezone.now() + dt.timedelta(minutes=1):
        due = timezone.localtime(reminder.due_at, ZoneInfo(reminder.treatment.patient.zone_name))
        return f"will be sent at its time, {due:%a %Y-%m-%d %H:%M} (patient's time)"
    return "will be sent again within a minute"


# --- the reminder outbox ------------------------------------------------------------------------


@admin.register(Reminder)
class ReminderAdmin(ClinicScopedAdmin):
    """The outbox, read-only: what was sent, what failed and why; resend or cancel in bulk."""

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The dashboard's counts link to one clinic's reminders (the rows are scoped to the user's clinics anyway),
        # its visits of today to those of treatments not cancelled.
        return lookup in ("treatment__clinic__id__exact", "treatment__status__exact") or super().lookup_allowed(
            lookup, value, request
        )

    log_views = True
    list_display = [
        "due_at", "occurs_at", "treatment_link", "step", "occurrence", "status", "attempts", "last_error", "sent_at",
    ]
    list_filter = ["status", StepKindFilter, StepDayFilter]
    search_fields = ["treatment__patient__family_name", "treatment__patient__given_name"]
    date_hierarchy = "due_at"
    actions = ["resend_selected", "cancel_selected"]
    fields = [
        "treatment", "step", "occurrence", "occurs_at", "due_at", "status", "attempts", "last_attempt_at",
        "last_error", "queued_at", "lease_until", "sent_at", "done_at", "resend_count", "previous_status",
        "previous_attempts", "previous_attempt_at", "previous_sent_at", "previous_error", "moved_at", "moved_from",
        "move_reason", "move_count", "created_at", "updated_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).select_related("step", "treatment__patient")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return can_anywhere(request.user, Capability.MANAGE_REMINDERS)

    @admin.display(description="Treatment")
    def treatment_link(self, reminder: Reminder) -> str:
        url = reverse("admin:patients_treatment_change", args=[reminder.treatment_id])
        return format_html('<a href="{}">{}</a>', url, reminder.treatment.patient)

    def _each(self, request: HttpRequest, queryset: models.QuerySet, service: Any, verb: str) -> None:
        done, refused = 0, []
        for reminder in queryset.select_related("treatment__patient", "step"):
            try:
                service(reminder=reminder, by=request.user, request=request)
                done += 1
            except (ValidationError, PermissionDenied) as error:
                refused.append(f"{reminder.step.title}: {' '.join(getattr(error, 'messages', [str(error)]))}")
        if done:
            self.message_user(request, f"{counted(done, 'reminder')} {verb}.")
        for message in refused:
            self.message_user(request, message, messages.WARNING)

    @admin.action(description="Send the selected reminders again", permissions=["manage"])
    def resend_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        self._each(request, queryset, treatments.resend_reminder, "will be sent again")

    @admin.action(description="Cancel the selected reminders", permissions=["manage"])
    def cancel_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        self._each(request, queryset, treatments.cancel_reminder, "cancelled")

