"""Admin page: the problems patients flagged in their self-reports, and marking them reviewed.

The dashboard counts the open ones per clinic and links here (``?review=open&clinic=<id>``).
The list is read-only; "Mark reviewed" first shows the selected problems with a note to
write, then calls ``patients.outcomes.review_problem_flag`` for each, which checks the
role per clinic, keeps the first review, and writes the access log.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from clinic.admin_base import ClinicScopedAdmin
from clinic.ids import row_id
from clinic.roles import Capability
from clinic.scoping import clinic_ids, clinics_for
from clinic.words import counted
from patients import outcomes
from patients.models import OutcomeAssessment, ProblemFlag


def reviewed_words(report: OutcomeAssessment) -> str:
    """"Reviewed by Dr Ada Lane on 01 Dec 2026 at 14:05 (clinic time)", or "Not reviewed"."""
    if report.flag_reviewed_at is None:
        return "Not reviewed"
    when = report.flag_reviewed_at.astimezone(ZoneInfo(report.treatment.clinic.time_zone))
    by = report.flag_reviewed_by
    name = (by.get_full_name() or by.get_username()) if by is not None else "someone"
    return f"Reviewed by {name} on {when:%d %b %Y at %H:%M}"


class ReviewFilter(admin.SimpleListFilter):
    title = "review"
    parameter_name = "review"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Not reviewed"), ("done", "Reviewed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "open":
            return queryset.filter(flag_reviewed_at__isnull=True)
        if self.value() == "done":
            return queryset.filter(flag_reviewed_at__isnull=False)
        return queryset


class ClinicFilter(admin.SimpleListFilter):
    """By clinic, for the dashboard's per-clinic link. Listed only to someone in several clinics."""

    title = "clinic"
    parameter_name = "clinic"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(clinic.pk), clinic.name) for clinic in clinics_for(request.user).order_by("name")]

    def has_output(self) -> bool:
        return len(self.lookup_choices) > 1

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        clinic_id = row_id(value)
        if clinic_id is None:
            return queryset.none()
        return queryset.filter(treatment__clinic_id=clinic_id)


@admin.register(ProblemFlag)
class ProblemFlagAdmin(ClinicScopedAdmin):
    change_capability = Capability.LOG_OUTCOMES
    log_views = True  # the patient's own words about their skin
    list_display = [
        "patient", "treatment_link", "day", "sent_at", "patient_words", "ratings", "photos", "review_state",
    ]
    list_display_links = None  # each row leads to its treatment, where the reports are read in context
    list_filter = [ReviewFilter, ClinicFilter]
    list_select_related = ["treatment__patient", "treatment__clinic", "flag_reviewed_by"]
    search_fields = ["treatment__patient__family_name", "treatment__patient__given_name", "treatment__patient__reference"]
    ordering = ["-recorded_at", "-pk"]
    actions = ["mark_reviewed"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("photos")  # flagged self-reports only (the manager)

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        # ClinicFilter hides itself for someone in one clinic, and still takes the dashboard's ?clinic=.
        return list(self.list_filter)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # patients flag problems, through their link

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the patient's words are theirs; reviewing is the action below

    def has_review_permission(self, request: HttpRequest) -> bool:
        return outcomes.may_review_flags_somewhere(request.user)

    # --- columns ----------------------------------------------------------------------------------
    def get_list_display(self, request: HttpRequest) -> list[Any]:
        display = list(super().get_list_display(request))
        clinicians_of = clinic_ids(request.user, Capability.LOG_OUTCOMES)
        if not clinicians_of:
            return display  # coordinators review flags; recording an adverse event is a clinician's

        @admin.display(description="Next")
        def next_step(report: OutcomeAssessment) -> str:
            # What a clinician does next about what the patient wrote: an adverse event, on this treatment.
            if report.treatment.clinic_id not in clinicians_of:
                return "—"
            url = reverse("admin:patients_adverseevent_add") + f"?treatment={report.treatment_id}"
            return format_html('<a href="{}">Record adverse event…</a>', url)

        return [*display, next_step]

    @admin.display(description="Patient", ordering="treatment__patient__family_name")
    def patient(self, report: OutcomeAssessment) -> str:
        url = reverse("admin:patients_patient_change", args=[report.treatment.patient_id])
        return format_html('<a href="{}">{}</a>', url, report.treatment.patient.full_name)

    @admin.display(description="Treatment")
    def treatment_link(self, report: OutcomeAssessment) -> str:
        url = reverse("admin:patients_treatment_change", args=[report.treatment_id]) + "#patient-reports"
        return format_html('<a href="{}">Treatment {} ({})</a>', url, report.treatment_id, report.treatment.clinic.name)

    @admin.display(description="Day", ordering="time_point_day")
    def day(self, report: OutcomeAssessment) -> str:
        return f"Day {report.time_point_day}"

    @admin.display(description="Sent", ordering="recorded_at")
    def sent_at(self, report: OutcomeAssessment) -> str:
        when = report.recorded_at.astimezone(ZoneInfo(report.treatment.clinic.time_zone))
        return f"{when:%d %b %Y %H:%M}"

    @admin.display(description="What they wrote")
    def patient_words(self, report: OutcomeAssessment) -> str:
        return report.notes or "—"

    @admin.display(description="Redness, pain, itch")
    def ratings(self, report: OutcomeAssessment) -> str:
        return rating_words(report)

    @admin.display(description="Photos")
    def photos(self, report: OutcomeAssessment) -> str:
        return photo_links(report)

    @admin.display(description="Review")
    def review_state(self, report: OutcomeAssessment) -> str:
        if report.flag_reviewed_at is None:
            return format_html('<strong class="flag-open">{}</strong>', "Not reviewed")
        note = f": {report.flag_review_note}" if report.flag_review_note else ""
        return f"{reviewed_words(report)}{note}"

    # --- the action --------------------------------------------------------------------------------
    @admin.action(description="Mark reviewed", permissions=["review"])
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """First a page listing the selected problems with a note to write; its "Mark reviewed" reviews them all."""
        # The selected rows among those in reach, whatever the list's filters: a problem a colleague
        # reviewed meanwhile must still be counted as skipped, not vanish from ?review=open.
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME) if "apply" in request.POST else None
        reports = list(
            (self.get_queryset(request).filter(pk__in=selected) if selected is not None else queryset)
            .select_related("treatment__clinic", "treatment__patient", "flag_reviewed_by").order_by("-recorded_at", "-pk")
        )
        if not reports:
            self.message_user(request, "None of the selected problems is one you can see; nothing was reviewed.",
                              messages.WARNING)
            return None
        form = ReviewNoteForm(request.POST if selected is not None else None)
        if not form.is_valid():
            return self._review_page(request, reports, form, status=400 if form.is_bound else 200)
        self._review_all(request, reports, note=form.cleaned_data["note"])
        return None

    def _review_page(self, request: HttpRequest, reports: list[OutcomeAssessment], form: ReviewNoteForm, *,
                     status: int) -> TemplateResponse:
        rows = [
            (report, reviewed_words(report) if report.flag_reviewed_at is not None else "",
             outcomes.may_review_flags(request.user, report.treatment.clinic_id))
            for report in reports
        ]
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Mark problems reviewed",
            "rows": rows, "form": form, "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "open_count": sum(1 for _report, done, allowed in rows if not done and allowed),
        }
        return TemplateResponse(request, "admin/patients/problemflag/mark_reviewed.html", context, status=status)

    def _review_all(self, request: HttpRequest, reports: list[OutcomeAssessment], *, note: str) -> None:
        done, already, refused = 0, 0, []
        for report in reports:
            try:
                reviewed = outcomes.review_problem_flag(assessment=report, by=request.user, note=note, request=request)
            except (PermissionDenied, ValidationError) as error:
                refused.append(f"{report.treatment.patient.full_name}, day {report.time_point_day}: "
                               f"{' '.join(getattr(error, 'messages', [str(error)]))}")
                continue
            done, already = done + reviewed, already + (not reviewed)
        if done:
            with_note = " with your note" if note else ""
            self.message_user(request, f"{counted(done, 'problem')} marked reviewed{with_note}.")
        if already:
            self.message_user(
                request, f"{already} had already been reviewed and were skipped; their first review stays.", messages.INFO,
            )
        for message in refused:
            self.message_user(request, message, messages.WARNING)


class ReviewNoteForm(forms.Form):
    """The note of a review: optional, as on the treatment's page, and checked by the same rule."""

    note = forms.CharField(
        label="Note (optional)", required=False, strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "maxlength": outcomes.REVIEW_NOTE_MAX_LENGTH}),
        help_text="What you did about it, e.g. \"Phoned; seen tomorrow 9:00\". The same note is kept with each problem.",
    )

    def clean_note(self) -> str:
        try:
            return outcomes.clean_review_note(self.cleaned_data["note"])
        except ValidationError as error:
            raise ValidationError(error.message_dict["note"]) from None


def rating_words(report: OutcomeAssessment) -> str:
    """The patient's ratings in their own scale's words, e.g. "Severe redness · pain 8/10 · itch 2/10"."""
    parts = []
    if report.erythema is not None:
        parts.append(f"{outcomes.patient_redness_word(report.erythema)} redness")
    if report.pain is not None:
        parts.append(f"pain {report.pain}/10")
    if report.pruritus is not None:
        parts.append(f"itch {report.pruritus}/10")
    return " · ".join(parts) or "—"


def photo_links(report: OutcomeAssessment) -> str:
    """Links to the report's photos (loaded with the list: ``prefetch_related("photos")``), or "—"."""
    photos = list(report.photos.all())
    if not photos:
        return "—"
    return format_html_join(
        ", ", '<a href="{}">photo {}</a>',
        ((reverse("patients:photo-download", args=[photo.pk]), number) for number, photo in enumerate(photos, start=1)),
    )
