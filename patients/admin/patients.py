"""Admin pages: patients, with their intakes and screenings on the patient page.

The pages are thin: every decision (duplicates, answers, screening, override,
permissions) is made by the services in ``patients.patient_records``,
``patients.intake`` and ``patients.screenings``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from clinic.admin_base import ClinicScopedAdmin
from clinic.audit import record_event
from clinic.ids import row_id
from clinic.roles import Capability
from clinic.scoping import can, can_anywhere, scoped, sees_several_clinics
from clinic.words import counted, verb
from patients.admin.treatments import recomputed_summary
from patients.consent import renew_consent
from patients.intake import (
    RECENT_INTAKE_LINK,
    IntakeForm,
    intake_links_sent,
    reconfirm_intake,
    record_intake,
    send_intake_link,
)
from patients.models import Patient, Screening, ScreeningOverride
from patients.models.patient import CONSENT_UNRECORDED
from patients.patient_records import find_duplicates, record_patient_created, record_patient_viewed
from patients.patient_search import split_search
from patients.screenings import (
    assert_screening_usable,
    override_screening,
    run_screening,
    versions_usable_by,
)
from patients.treatments import recompute_for_new_time_zone, resendable_after_refusal
from protocols.facts import FACTS_BY_CODE

# --- forms ------------------------------------------------------------------------------


class PatientAdminForm(forms.ModelForm):
    confirm_duplicate = forms.BooleanField(
        required=False, label="This is a different person: create the record anyway",
        help_text="Tick only after checking the existing record named above.",
    )

    class Meta:
        model = Patient
        fields = [
            "clinic", "reference", "given_name", "family_name", "date_of_birth", "email", "phone",
            "preferred_language", "time_zone", "fitzpatrick_type", "reminder_consent", "consent_at", "consent_source",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.instance.pk is None and not cleaned.get("confirm_duplicate") and cleaned.get("clinic"):
            duplicates = find_duplicates(
                clinic=cleaned["clinic"], given_name=cleaned.get("given_name", ""),
                family_name=cleaned.get("family_name", ""), date_of_birth=cleaned.get("date_of_birth"),
                email=cleaned.get("email", ""),
            )
            if duplicates:
                links = format_html_join(
                    ", ", '<a href="{}">{}</a>',
                    ((reverse("admin:patients_patient_change", args=[p.pk]), str(p)) for p in duplicates),
                )
                raise ValidationError(
                    format_html("This patient may already be on record: {}. Open the existing record, or tick "
                                "the confirmation box below to create a new one.", links)
                )
        return cleaned


class ScreenForm(forms.Form):
    protocol_version = forms.ModelChoiceField(queryset=None, label="Protocol version")
    planned_for = forms.DateField(
        label="Planned procedure date", widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The day of the procedure, on the clinic's clock: a treatment needs a screening for its own day.",
    )
    intake = forms.ModelChoiceField(queryset=None, required=False, empty_label="The latest intake")

    def __init__(self, *args: Any, patient: Patient, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["protocol_version"].queryset = versions_usable_by(patient.clinic)
        self.fields["intake"].queryset = patient.intakes.order_by("-answered_at")
        # Today on the clinic's clock: the day a procedure done now has to be screened for.
        self.fields["planned_for"].initial = timezone.localdate(timezone=ZoneInfo(patient.clinic.time_zone))


class OverrideForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), label="Why the treatment may go ahead",
        help_text="Your clinical reasoning, e.g. oncology clearance on file, prophylaxis prescribed.",
    )


class RenewConsentForm(forms.Form):
    """When and how a patient who unsubscribed consented again; the time is read on the clinic's clock."""

    consent_at = forms.DateTimeField(
        label="Consented again on",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    consent_source = forms.ChoiceField(label="How", choices=[("", "---------"), *Patient.ConsentSource.choices])

    def __init__(self, *args: Any, patient: Patient, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = ZoneInfo(patient.clinic.time_zone)
        self.fields["consent_at"].help_text = (
            f"When the patient gave consent anew (e.g. the date the form was signed), {patient.clinic.time_zone} time."
        )

    def full_clean(self) -> None:
        # Consent is given at the clinic: a typed time means the clinic's clock, whoever types it.
        with timezone.override(self.zone):
            super().full_clean()


# --- the patient admin -------------------------------------------------------------------


# After the "@" and after each dot: where an address may wrap in a narrow column.
EMAIL_BREAK_POINTS = re.compile(r"(?<=[@.])")


def email_with_break_points(address: str) -> SafeString:
    """``address`` as HTML that may wrap after its "@" or a dot (``<wbr>``), each piece escaped."""
    *leading, last = [piece for piece in EMAIL_BREAK_POINTS.split(address) if piece] or [""]
    return format_html("{}{}", format_html_join("", "{}<wbr>", ((piece,) for piece in leading)), last)


def _outcome_badge(outcome: str, label: str) -> str:
    return format_html('<span class="outcome outcome-{}">{}</span>', outcome, label)


class ConsentRecordFilter(admin.SimpleListFilter):
    title = "consent record"
    parameter_name = "consent_record"
    UNRECORDED = "unrecorded"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(self.UNRECORDED, "Ticked, no date or source")]

    def queryset(self, request: HttpRequest, queryset: models.QuerySet) -> models.QuerySet:
        if self.value() == self.UNRECORDED:
            return queryset.filter(CONSENT_UNRECORDED)
        return queryset


class BirthDecadeFilter(admin.SimpleListFilter):
    title = "born in"
    parameter_name = "born"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # The decades the list's own patients were born in: one query, however many patients.
        years = model_admin.get_queryset(request).dates("date_of_birth", "year")
        decades = sorted({day.year // 10 * 10 for day in years}, reverse=True)
        return [(str(decade), f"the {decade}s") for decade in decades]

    def queryset(self, request: HttpRequest, queryset: models.QuerySet) -> models.QuerySet:
        if self.value() is None:
            return queryset
        decade = row_id(self.value())
        if decade is None or not 1000 <= decade <= 9990:
            raise IncorrectLookupParameters(f"No such decade: {self.value()}")
        return queryset.filter(date_of_birth__gte=dt.date(decade, 1, 1), date_of_birth__lt=dt.date(decade + 10, 1, 1))


@admin.register(Patient)
class PatientAdmin(ClinicScopedAdmin):
    form = PatientAdminForm
    change_form_template = "admin/patients/patient/change_form.html"
    log_history_views = True  # its own page logs "patient.view" (change_view); its history is logged like others'
    list_display = ["family_name", "given_name", "date_of_birth", "email_address", "clinic", "latest_screening"]
    list_filter = ["clinic", "reminder_consent", ConsentRecordFilter, BirthDecadeFilter]
    search_fields = ["family_name", "given_name", "email", "reference"]
    search_help_text = (
        "Name, email or reference, and a date of birth as 1988-04-02 or day/month/year: 02/04/1988 is "
        "2 April 1988. Both at once narrow the list, e.g. Nwosu 02/04/1988."
    )
    actions = ["send_intake_links"]
    readonly_fields = ["opted_out_at", "created_at"]
    fieldsets = [
        (None, {"fields": ["clinic", "reference", "given_name", "family_name", "date_of_birth"]}),
        ("Contact", {"fields": ["email", "phone", "preferred_language", "time_zone"]}),
        ("Skin", {"fields": ["fitzpatrick_type"]}),
        ("Email reminders", {"fields": ["reminder_consent", "consent_at", "consent_source", "opted_out_at"]}),
    ]

    def get_list_display(self, request: HttpRequest) -> list[str]:
        # Someone who sees one clinic only would read its name on every row, in a column that
        # pushes the latest screening out of sight at 1280 px.
        columns = list(super().get_list_display(request))
        if not sees_several_clinics(request.user):
            columns.remove("clinic")
        return columns

    def get_readonly_fields(self, request: HttpRequest, obj: Patient | None = None) -> list[str]:
        # A patient's records belong to one clinic; moving them would hand them to another tenant.
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "clinic"] if obj is not None else fields

    def get_fieldsets(self, request: HttpRequest, obj: Patient | None = None) -> list[Any]:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None:
            fieldsets.append(("Duplicates", {"fields": ["confirm_duplicate"]}))
        return fieldsets

    def get_search_results(self, request: HttpRequest, queryset: models.QuerySet, search_term: str) -> tuple:
        # A date in the search is a date of birth; the other words search the names, email and reference.
        dates, words = split_search(search_term)
        queryset, may_have_duplicates = super().get_search_results(request, queryset, words)
        for day in dates:
            queryset = queryset.filter(date_of_birth=day)
        return queryset, may_have_duplicates

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        # The list shows each patient's latest screening: one subquery in the
        # page's own query rather than one query per row.
        latest = Screening.objects.filter(patient=models.OuterRef("pk")).order_by("-run_at", "-pk").values("outcome")[:1]
        return super().get_queryset(request).annotate(latest_screening_outcome=models.Subquery(latest))

    @admin.display(description="Email", ordering="email")
    def email_address(self, patient: Patient) -> SafeString:
        return email_with_break_points(patient.email)

    @admin.display(description="Latest screening")
    def latest_screening(self, patient: Patient) -> str:
        outcome = patient.latest_screening_outcome
        if outcome is None:
            return "—"
        return _outcome_badge(outcome, Screening.Outcome(outcome).label)

    def save_model(self, request: HttpRequest, obj: Patient, form: forms.Form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            record_patient_created(
                patient=obj, created_by=request.user,
                confirmed_duplicate=bool(form.cleaned_data.get("confirm_duplicate")), request=request,
            )
        elif "time_zone" in form.changed_data:
            # In the admin's transaction: the patient and their reminders' new times are saved together.
            result = recompute_for_new_time_zone(
                patient=obj, previous_zone=form.initial.get("time_zone") or "", by=request.user, request=request
            )
            messages.info(request, f"Time zone changed to {obj.zone_name}; {recomputed_summary(result)}.")
        if change and "email" in form.changed_data and (resendable := resendable_after_refusal(obj)):
            # The resend was refused while the refused address stood; say it is possible now, and where.
            ids = ",".join(str(reminder.pk) for reminder in resendable)
            messages.warning(request, format_html(
                '{} failed because the old address was refused: <a href="{}">resend them</a> '
                "(select them and choose “Send the selected reminders again”).",
                counted(len(resendable), "reminder"), reverse("admin:patients_reminder_changelist") + f"?id__in={ids}",
            ))

    # --- the patient page ---------------------------------------------------------
    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        patient = self.get_object(request, object_id)
        if patient is not None:
            if request.method == "GET":
                record_patient_viewed(patient=patient, viewer=request.user, request=request)
                if patient.opted_out_at is not None:
                    messages.warning(
                        request,
                        f"The patient unsubscribed on {patient.opted_out_at:%Y-%m-%d %H:%M} UTC: no reminder "
                        "emails go out, whatever the consent box says. If they ask for reminders again, use "
                        "\"Record renewed consent…\".",
                    )
                if patient.consent_unrecorded:
                    messages.warning(
                        request,
                        "Consent to email reminders is ticked but not on record: add when and how the patient "
                        "gave it (reminders still go out meanwhile; saving this page asks for both).",
                    )
            extra_context = {**(extra_context or {}), **self._history_context(request, patient)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _history_context(self, request: HttpRequest, patient: Patient) -> dict[str, Any]:
        screenings = list(
            Screening.objects.filter(patient=patient).select_related("protocol_version__protocol", "run_by")
            .annotate(has_override=models.Exists(ScreeningOverride.objects.filter(screening=models.OuterRef("pk"))))
            .order_by("-run_at")
        )
        return {
            "intakes": patient.intakes.select_related("recorded_by", "confirmed_by").order_by("-answered_at"),
            "intake_links": intake_links_sent(patient),
            "screenings": screenings,
            "can_screen": can(request.user, Capability.SCREEN, patient.clinic),
            "can_edit": can(request.user, Capability.EDIT_PATIENTS, patient.clinic),
            "treatments_url": reverse("admin:patients_treatment_changelist") + f"?patient__id__exact={patient.pk}",
            "access_log_url": (
                reverse("admin:clinic_auditevent_changelist") + f"?patient={patient.pk}"
                if can(request.user, Capability.VIEW_AUDIT, patient.clinic) else ""
            ),
        }

    # --- the list action ----------------------------------------------------------
    def has_send_intake_link_permission(self, request: HttpRequest) -> bool:
        return can_anywhere(request.user, Capability.EDIT_PATIENTS)

    @admin.action(description="Send intake link by email", permissions=["send_intake_link"])
    def send_intake_links(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        # Someone who edits patients in one clinic and only reads another's may have ticked both:
        # the links go to the patients they may contact, and they are told about the others.
        allowed = scoped(queryset, request.user, Capability.EDIT_PATIENTS)
        refused = queryset.count() - allowed.count()
        if refused:
            self.message_user(request, f"{counted(refused, 'patient')} {verb(refused, 'is', 'are')} in a clinic "
                                       "where your role does not send intake "
                                       "links; none was sent to them.", messages.WARNING)
        sent = 0
        for patient in allowed.select_related("clinic"):
            try:
                send_intake_link(patient=patient, sent_by=request.user, request=request)
                sent += 1
            except ValidationError as error:
                again = (" None was sent again; send another from their page if it is needed."
                         if getattr(error, "code", None) == RECENT_INTAKE_LINK else "")
                self.message_user(request, f"{patient}: {' '.join(error.messages)}{again}", messages.WARNING)
        if sent:
            self.message_user(request, f"Intake link sent to {counted(sent, 'patient')}.", messages.SUCCESS)

    # --- extra pages ----------------------------------------------------------------
    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/screen/", wrap(self.screen_view), name="patients_patient_screen"),
            path("<path:object_id>/screenings/<int:screening_id>/", wrap(self.screening_view),
                 name="patients_patient_screening"),
            path("<path:object_id>/intakes/add/", wrap(self.intake_add_view), name="patients_patient_intake_add"),
            path("<path:object_id>/intakes/<int:intake_id>/", wrap(self.intake_view),
                 name="patients_patient_intake"),
            path("<path:object_id>/send-intake-link/", wrap(self.send_link_view),
                 name="patients_patient_send_intake_link"),
            path("<path:object_id>/renew-consent/", wrap(self.renew_consent_view),
                 name="patients_patient_renew_consent"),
            *super().get_urls(),
        ]

    def _patient_or_404(self, request: HttpRequest, object_id: str) -> Patient:
        patient = self.get_object(request, object_id)  # scoped: another clinic's patient is a 404
        if patient is None:
            raise Http404("No such patient.")
        return patient

    def _page(
        self, request: HttpRequest, template: str, patient: Patient, title: str, *, status: int = 200, **context: Any
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "patient": patient, "title": title,
            "patient_url": reverse("admin:patients_patient_change", args=[patient.pk]), **context,
        }
        return TemplateResponse(request, template, context, status=status)

    def screen_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        patient = self._patient_or_404(request, object_id)
        if not can(request.user, Capability.SCREEN, patient.clinic):
            raise PermissionDenied
        form = ScreenForm(request.POST or None, patient=patient)
        if request.method == "POST" and form.is_valid():
            try:
                screening = run_screening(patient=patient, run_by=request.user, request=request, **form.cleaned_data)
            except ValidationError as error:
                _add_service_errors(form, error)
            else:
                return HttpResponseRedirect(
                    reverse("admin:patients_patient_screening", args=[patient.pk, screening.pk])
                )
        return self._page(request, "admin/patients/patient/screen.html", patient, f"Screen {patient.full_name}",
                          form=form, status=400 if form.is_bound else 200)

    def screening_view(self, request: HttpRequest, object_id: str, screening_id: int) -> HttpResponse:
        patient = self._patient_or_404(request, object_id)
        screening = Screening.objects.filter(patient=patient, pk=screening_id).select_related(
            "protocol_version__protocol", "run_by", "intake").first()
        if screening is None:
            raise Http404("No such screening.")
        may_override = can(request.user, Capability.OVERRIDE_SCREENING, patient.clinic)
        form = OverrideForm(request.POST or None)
        if request.method == "POST":
            if not may_override:
                raise PermissionDenied("Only a clinician may override a screening.")
            if form.is_valid():
                try:
                    override_screening(screening=screening, clinician=request.user,
                                       reason=form.cleaned_data["reason"], request=request)
                except ValidationError as error:
                    _add_service_errors(form, error)
                else:
                    messages.success(request, "Override recorded.")
                    return HttpResponseRedirect(request.path)
        else:
            record_event(actor=request.user, action="screening.view", clinic=patient.clinic, obj=screening,
                         request=request)
        override = ScreeningOverride.objects.filter(screening=screening).select_related("clinician").first()
        return self._page(
            request, "admin/patients/patient/screening.html", patient, f"Screening of {patient.full_name}",
            screening=screening, override=override, form=form, may_override=may_override,
            overridable=screening.outcome == Screening.Outcome.NEEDS_OVERRIDE and override is None,
            treat_url=_record_treatment_url(request, screening), status=400 if form.is_bound else 200,
        )

    def intake_add_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        patient = self._patient_or_404(request, object_id)
        if not can(request.user, Capability.EDIT_PATIENTS, patient.clinic):
            raise PermissionDenied
        form = IntakeForm(request.POST or None, born=patient.date_of_birth)
        if request.method == "POST" and form.is_valid():
            try:
                record_intake(patient=patient, answers=form.answers(), recorded_by=request.user, request=request)
            except ValidationError as error:
                _add_service_errors(form, error)
            else:
                messages.success(request, "Intake recorded.")
                return HttpResponseRedirect(reverse("admin:patients_patient_change", args=[patient.pk]))
        return self._page(request, "admin/patients/patient/intake_form.html", patient,
                          f"New intake for {patient.full_name}", form=form, status=400 if form.is_bound else 200)

    def intake_view(self, request: HttpRequest, object_id: str, intake_id: int) -> HttpResponse:
        patient = self._patient_or_404(request, object_id)
        intake = patient.intakes.filter(pk=intake_id).select_related("recorded_by", "confirmed_by").first()
        if intake is None:
            raise Http404("No such intake.")
        if request.method == "POST":
            if not can(request.user, Capability.EDIT_PATIENTS, patient.clinic):
                raise PermissionDenied
            reconfirm_intake(intake=intake, confirmed_by=request.user, request=request)
            messages.success(request, "Intake re-confirmed today.")
            return HttpResponseRedirect(request.path)
        record_event(actor=request.user, action="intake.view", clinic=patient.clinic, obj=intake, request=request)
        rows = [(FACTS_BY_CODE[code].question if code in FACTS_BY_CODE else code, _show(value))
                for code, value in intake.answers.items()]
        history = intake.history.select_related("history_user").order_by("-history_date")
        return self._page(request, "admin/patients/patient/intake.html", patient, f"Intake of {patient.full_name}",
                          intake=intake, rows=rows, history=history,
                          can_edit=can(request.user, Capability.EDIT_PATIENTS, patient.clinic))

    def send_link_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        patient = self._patient_or_404(request, object_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not can(request.user, Capability.EDIT_PATIENTS, patient.clinic):
            raise PermissionDenied
        try:
            send_intake_link(patient=patient, sent_by=request.user, request=request,
                             even_if_recent=request.POST.get("send_anyway") == "1")
        except ValidationError as error:
            if getattr(error, "code", None) == RECENT_INTAKE_LINK:
                # Going back and clicking again, or a double click: asked, not sent twice unseen.
                return self._page(request, "admin/patients/patient/send_intake_link.html", patient,
                                  f"Send another intake link to {patient.full_name}?", message=error.messages[0],
                                  status=409)
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, f"Intake link sent to {patient.email}.")
        return HttpResponseRedirect(reverse("admin:patients_patient_change", args=[patient.pk]))

    def renew_consent_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        patient = self._patient_or_404(request, object_id)
        if not can(request.user, Capability.EDIT_PATIENTS, patient.clinic):
            raise PermissionDenied
        patient_url = reverse("admin:patients_patient_change", args=[patient.pk])
        if patient.opted_out_at is None:
            messages.info(request, "The patient has not unsubscribed: change their consent on this page.")
            return HttpResponseRedirect(patient_url)
        form = RenewConsentForm(request.POST or None, patient=patient)
        if request.method == "POST" and form.is_valid():
            try:
                renew_consent(patient=patient, recorded_by=request.user, request=request, **form.cleaned_data)
            except ValidationError as error:
                _add_service_errors(form, error)
            else:
                messages.success(request, "Renewed consent recorded: reminders due from now on are sent.")
                return HttpResponseRedirect(patient_url)
        return self._page(request, "admin/patients/patient/renew_consent.html", patient,
                          f"Renewed consent of {patient.full_name}", form=form, status=400 if form.is_bound else 200)


def _record_treatment_url(request: HttpRequest, screening: Screening) -> str:
    """Where to record a treatment on this screening, or "" when it does not allow one (or the user may not)."""
    if not can(request.user, Capability.RECORD_TREATMENT, screening.patient.clinic):
        return ""
    try:
        # Whatever its day, as the record form's list: the form names the day and the service judges it.
        assert_screening_usable(
            screening=screening, patient=screening.patient, protocol_version=screening.protocol_version, on=timezone.now()
        )
    except ValidationError:
        return ""
    return reverse("admin:patients_treatment_add") + f"?patient={screening.patient_id}&screening={screening.pk}"


def _show(value: Any) -> str:
    if value is True:
        return "Yes"
    if value is False:
        return "No"
    return str(value)


def _add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Put a service's field-keyed errors on the form's fields (or on the form)."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, messages_ in error.message_dict.items():
        form.add_error(field if field in form.fields else None, messages_)
