"""Admin pages: outcome assessments, adverse events, photos, and the review pages.

Entering and correcting go through ``patients.outcomes`` (forms call its
``check_*`` functions so errors show on the form; ``save_model`` calls the
recording functions).  The review pages — a patient's healing charts, a
protocol's report, two protocols side by side, split-face arms — are admin
views registered on the assessment admin; every object they load goes through
``clinic.scoping.scoped``, so another clinic's ids give 404.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from clinic.admin_base import ClinicScopedAdmin, ScopedInline
from clinic.audit import record_event
from clinic.ids import row_id
from clinic.roles import Capability
from clinic.scoping import can, scoped
from clinic.words import counted
from patients import charts, outcomes, staff_alerts
from patients.admin.awaiting import awaiting_outcomes_view
from patients.measures import by_treatment, measures_for
from patients.models import AdverseEvent, OutcomeAssessment, OutcomePhoto, Patient, Treatment, TreatmentArm
from patients.photos import prepare_photo, store_photo
from patients.review import (
    OBSERVATIONAL_NOTE,
    ReviewFilterForm,
    ReviewFilters,
    compare_protocols,
    protocol_report,
    split_face_comparison,
    summarise,
    treatments_for_review,
)
from protocols.models import Protocol

CLINICIAN_SCORE_FIELDS = [
    "erythema", "oedema", "reepithelialisation_complete", "reepithelialisation_percent", "pain", "pruritus", "gais", "notes",
]


def _days(days: list[int]) -> str:
    """"day 3" or "days 0, 1, 3 and 7"."""
    if len(days) == 1:
        return f"day {days[0]}"
    return f"days {', '.join(map(str, days[:-1]))} and {days[-1]}"


def _as_form_error(error: ValidationError | PermissionDenied) -> ValidationError:
    return ValidationError(str(error)) if isinstance(error, PermissionDenied) else error


def opened_revision_field() -> forms.IntegerField:
    # The record's revision when its page was opened, sent back with the correction: the
    # service refuses it if a colleague (or another tab) changed the record in between.
    return forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)


def set_opened_revision(form: forms.ModelForm) -> None:
    """Put the record's current revision in a change form that is being opened (not one being submitted)."""
    if form.instance.pk is not None and not form.is_bound and "opened_revision" in form.fields:
        form.fields["opened_revision"].initial = outcomes.current_revision(form.instance)


def revision_opened_on(cleaned: dict[str, Any]) -> int:
    """The revision the change form was opened on; a form without one (opened before this check existed) is refused."""
    revision = cleaned.get("opened_revision")
    if revision is None:
        raise ValidationError("This page did not say which revision of the record it shows, so saving it could undo "
                              "a colleague's change. Nothing was saved: reload the page and make your change again.")
    return revision


def with_reload_link(error: ValidationError, *, url: str) -> ValidationError:
    """A correction refused because the record changed since it was opened: the message leads to its fresh page."""
    if not isinstance(error, outcomes.ChangedSinceOpened):
        return error
    return ValidationError(format_html('{} <a href="{}" id="reload-record">Reload this page</a>', error.message, url))


class ArmChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, arm: TreatmentArm) -> str:
        kind = "control" if arm.is_control else "exosome"
        return f"{arm.label} ({kind}) — treatment {arm.treatment_id}"


# --- assessments -------------------------------------------------------------------------------


class TimePointInput(forms.NumberInput):
    """A day number with the protocol's time points offered as suggestions (an HTML datalist, no script)."""

    def __init__(self, days: list[int]) -> None:
        super().__init__(attrs={"min": 0, "list": "time-point-days"})
        self.days = days

    def render(self, name: str, value: Any, attrs: dict | None = None, renderer: Any = None) -> str:
        options = format_html_join("", '<option value="{}">day {}</option>', ((day, day) for day in self.days))
        return format_html('{}<datalist id="time-point-days">{}</datalist>', super().render(name, value, attrs, renderer),
                           options)


class OutcomeAssessmentForm(forms.ModelForm):
    photo = forms.FileField(
        required=False, help_text="Optional. JPEG, PNG or WebP; stored privately, shown only to staff of this clinic."
    )
    correction_reason = forms.CharField(
        required=False, max_length=outcomes.REASON_MAX_LENGTH,
        help_text=(f"Required when you change an entry: why it is corrected ({outcomes.REASON_MIN_LENGTH} to "
                   f"{outcomes.REASON_MAX_LENGTH} characters). The original stays in the history."),
    )
    opened_revision = opened_revision_field()
    user: Any = None  # set per request by the admin

    class Meta:
        model = OutcomeAssessment
        fields = ["treatment", "arm", "time_point_day", "phase", *CLINICIAN_SCORE_FIELDS]
        widgets = {"erythema": forms.RadioSelect, "oedema": forms.RadioSelect}
        labels = {
            "erythema": "Erythema (CEA)", "pain": "Pain (0–10)", "pruritus": "Pruritus (0–10)", "gais": "GAIS",
            "reepithelialisation_percent": "Re-epithelialised (% of area)",
            "reepithelialisation_complete": "Re-epithelialisation complete",
        }
        help_texts = {
            "erythema": "Clinician's Erythema Assessment (CEA).",
            "time_point_day": "Days after the procedure; day 0 is the day of it (choose before or after).",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        anchors = {"erythema": outcomes.ERYTHEMA_ANCHORS, "oedema": outcomes.OEDEMA_ANCHORS}
        for name, words in anchors.items():
            if name in self.fields:
                self.fields[name].choices = [("", "not scored"), *((n, f"{n} — {text}") for n, text in words.items())]
        set_opened_revision(self)

    def clean_photo(self) -> Any:
        upload = self.cleaned_data.get("photo")
        if not upload:
            return None
        try:
            return prepare_photo(upload)
        except ValidationError as error:
            raise ValidationError(error.message_dict["photo"]) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        scores = {name: cleaned.get(name) for name in CLINICIAN_SCORE_FIELDS}
        scores["notes"] = scores["notes"] or ""
        try:
            if self.instance.pk is None:
                outcomes.check_new_assessment(
                    treatment=cleaned["treatment"], by=self.user, time_point_day=cleaned["time_point_day"],
                    scores=scores, arm=cleaned.get("arm"), phase=cleaned.get("phase") or "",
                )
            else:
                self.changes = {
                    **scores, "arm": cleaned.get("arm"), "time_point_day": cleaned["time_point_day"],
                    "phase": cleaned.get("phase") or "",
                }
                outcomes.check_correction(
                    assessment=self.instance, by=self.user, changes=self.changes,
                    reason=cleaned.get("correction_reason") or "", based_on=revision_opened_on(cleaned),
                )
        except (ValidationError, PermissionDenied) as error:
            error = with_reload_link(_as_form_error(error), url=self._change_url())
            raise self._with_link_to_the_entry(error) from None
        return cleaned

    def _change_url(self) -> str:
        return reverse("admin:patients_outcomeassessment_change", args=[self.instance.pk])

    def _with_link_to_the_entry(self, error: ValidationError) -> ValidationError:
        """A time point already scored: the message leads to that entry, which is where a correction is made."""
        messages = getattr(error, "error_dict", {}).get("time_point_day", [])
        taken = next((m for m in messages if m.code == outcomes.ALREADY_RECORDED_CODE), None)
        if taken is None:
            return error
        url = reverse("admin:patients_outcomeassessment_change", args=[taken.params["entry"]])
        linked = format_html('{} <a href="{}" id="recorded-entry">Open that entry</a>', taken.message, url)
        return ValidationError({**error.error_dict, "time_point_day": [ValidationError(linked)]})


class OutcomePhotoInline(ScopedInline):
    model = OutcomePhoto
    fields = ["preview", "content_type", "width", "height", "uploaded_by", "uploaded_at"]
    readonly_fields = fields
    change_capability = Capability.LOG_OUTCOMES

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # photos are added with the form's photo field, through patients.photos

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Photo")
    def preview(self, photo: OutcomePhoto) -> str:
        return photo_preview(photo)


def photo_preview(photo: OutcomePhoto) -> str:
    return format_html(
        '<a href="{}" title="Download the full photo"><img src="{}" alt="Photo {}" style="max-height:120px;'
        'max-width:160px;border-radius:4px"></a>',
        reverse("patients:photo-download", args=[photo.pk]),
        reverse("patients:photo-thumbnail", args=[photo.pk]),
        photo.pk,
    )


class BackToTheTreatment:
    """After "Save", the entry's treatment page (where it was started from), not the clinic-wide list."""

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: str | None = None) -> HttpResponse:
        return self._to_treatment(request, obj, super().response_add(request, obj, post_url_continue))  # type: ignore[misc]

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        return self._to_treatment(request, obj, super().response_change(request, obj))  # type: ignore[misc]

    def _to_treatment(self, request: HttpRequest, obj: Any, response: HttpResponse) -> HttpResponse:
        staying = {"_continue", "_addanother", "_saveasnew", "_popup"} & set(request.POST)
        if response.status_code != 302 or staying:
            return response
        return HttpResponseRedirect(reverse("admin:patients_treatment_change", args=[obj.treatment_id]))


def _offer_only_its_treatments_arms(form: Any, obj: Any, *, user: Any, may_change: bool) -> None:
    """An entry being corrected may only name an arm of its own treatment (not every arm in the clinic).

    Someone who may only view the entry (an auditor, a past version's page) is offered no arm to log
    against, but must still see the one recorded: their choices are its treatment's arms they may view.
    """
    if obj is not None and "arm" in form.base_fields:
        field = form.base_fields["arm"]
        arms = field.queryset if may_change else scoped(TreatmentArm.objects.select_related("treatment"), user)
        field.queryset = arms.filter(treatment_id=obj.treatment_id)


@admin.register(OutcomeAssessment)
class OutcomeAssessmentAdmin(BackToTheTreatment, ClinicScopedAdmin):
    form = OutcomeAssessmentForm
    change_capability = Capability.LOG_OUTCOMES
    log_views = True  # a patient's clinical record: opening it is in the access log
    change_list_template = "admin/outcomes/assessment_change_list.html"
    inlines = [OutcomePhotoInline]
    raw_id_fields = ["treatment"]
    list_display = [
        "time_point", "patient", "protocol", "arm_label", "source", "erythema_words", "oedema",
        "reepithelialisation_complete", "pain", "recorded_by", "recorded_at", "photo_count", "healing",
    ]
    list_filter = ["source", "time_point_day", "problem_flagged", "treatment__protocol_version__protocol"]
    list_select_related = ["treatment__patient", "treatment__protocol_version__protocol", "arm", "recorded_by"]
    search_fields = ["treatment__patient__family_name", "treatment__patient__given_name", "treatment__patient__reference"]
    date_hierarchy = "recorded_at"
    radio_fields = {"phase": admin.HORIZONTAL}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(n_photos=Count("photos"))

    # --- permissions: patient-reported rows are the patient's words; nobody edits them here
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.source == OutcomeAssessment.Source.PATIENT:
            return False
        return super().has_change_permission(request, obj)

    # --- form -----------------------------------------------------------------------------
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return ["treatment", "source", "recorded_by", "recorded_at", "applied_as_instructed", "problem_flagged",
                "patient_redness"]

    @admin.display(description="Redness (the patient's own rating, not a CEA score)")
    def patient_redness(self, entry: OutcomeAssessment) -> str:
        if entry.erythema is None:
            return "not rated"
        word, text = outcomes.PATIENT_REDNESS[entry.erythema]
        return f"{entry.erythema} — {word}: {text}"

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[tuple[str | None, dict[str, Any]]]:
        editable = self.has_change_permission(request, obj) if obj is not None else self.has_add_permission(request)
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [
            (None, {"fields": ["treatment", "arm", "time_point_day", "phase"]}),
            ("Scores", {"fields": [
                "erythema", "oedema", ("reepithelialisation_complete", "reepithelialisation_percent"),
                ("pain", "pruritus"), "gais", "notes",
            ]}),
        ]
        if obj is not None and obj.source == OutcomeAssessment.Source.PATIENT:
            # The patient rated redness on their own words, not on the clinician's CEA anchors.
            scores = fieldsets[1][1]["fields"]
            scores[scores.index("erythema")] = "patient_redness"
        if obj is not None:
            fieldsets.append(("Recorded", {"fields": ["source", "recorded_by", "recorded_at"]}))
            if obj.source == OutcomeAssessment.Source.PATIENT:
                fieldsets.append(("The patient's answers", {"fields": ["applied_as_instructed", "problem_flagged"]}))
        if editable:
            fieldsets.append(("Photo", {"fields": ["photo"]}))
        if editable and obj is not None:
            fieldsets.append(("Correction", {"fields": ["correction_reason", "opened_revision"]}))
        return fieldsets

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form = type(form.__name__, (form,), {"user": request.user})  # (a subclass builds its fields anew)
        _offer_only_its_treatments_arms(form, obj, user=request.user,
                                        may_change=obj is not None and self.has_change_permission(request, obj))
        treatment = obj.treatment if obj is not None else self._treatment_in_query(request)
        if treatment is not None and "time_point_day" in form.base_fields:
            days = outcomes.time_points_for(treatment.protocol_version)
            field = form.base_fields["time_point_day"]
            field.widget = TimePointInput(days)
            field.help_text = (f"Days after the procedure; day 0 is the day of it (choose before or after). "
                               f"This protocol assesses on {_days(days)}.")
        return form

    def _treatment_in_query(self, request: HttpRequest) -> Treatment | None:
        """The treatment the "Log outcomes…" link names (``?treatment=<id>``), if the user may log outcomes for it.

        Read once per request: the form and its initial data both ask.
        """
        if hasattr(request, "_outcome_treatment"):
            return request._outcome_treatment
        treatment = None
        treatment_id = row_id(request.GET.get("treatment"))
        if treatment_id is not None:
            treatments = scoped(Treatment.objects.select_related("patient__clinic", "protocol_version"), request.user,
                                Capability.LOG_OUTCOMES)
            treatment = treatments.filter(pk=treatment_id, status=Treatment.Status.RECORDED).first()
        request._outcome_treatment = treatment
        return treatment

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        treatment = self._treatment_in_query(request)
        if treatment is not None and "time_point_day" not in request.GET:
            initial["time_point_day"] = outcomes.suggested_time_point(treatment=treatment)
        return initial

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "treatment":
            kwargs["queryset"] = scoped(
                Treatment.objects.filter(status=Treatment.Status.RECORDED), request.user, Capability.LOG_OUTCOMES
            )
        if db_field.name == "arm":
            arms = scoped(TreatmentArm.objects.select_related("treatment"), request.user, Capability.LOG_OUTCOMES)
            treatment_id = row_id(request.GET.get("treatment"))
            if treatment_id is not None:
                arms = arms.filter(treatment_id=treatment_id)
            return ArmChoiceField(queryset=arms, required=False, help_text="Which side, for split-face treatments.")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: OutcomeAssessment, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            original = OutcomeAssessment.objects.get(pk=obj.pk)
            saved = outcomes.correct_assessment(
                assessment=original, by=request.user, changes=form.changes, reason=data.get("correction_reason") or "",
                based_on=data["opened_revision"],
            )
        else:
            scores = {name: data.get(name) for name in CLINICIAN_SCORE_FIELDS}
            scores["notes"] = scores["notes"] or ""
            saved = outcomes.record_assessment(
                treatment=data["treatment"], by=request.user, time_point_day=data["time_point_day"],
                scores=scores, arm=data.get("arm"), phase=data.get("phase") or "",
            )
        # The admin goes on with ``obj`` (messages, redirect, log entry): make it the saved row.
        obj.__dict__.update({k: v for k, v in saved.__dict__.items() if k != "_state"})
        obj._state.adding = False
        if data.get("photo"):
            store_photo(assessment=saved, photo=data["photo"], uploaded_by=request.user)

    # --- list columns --------------------------------------------------------------------------
    @admin.display(description="Time point", ordering="time_point_day")
    def time_point(self, entry: OutcomeAssessment) -> str:
        return f"Day {entry.time_point_day}" + (f" ({entry.phase})" if entry.phase else "")

    @admin.display(description="Patient", ordering="treatment__patient__family_name")
    def patient(self, entry: OutcomeAssessment) -> str:
        return entry.treatment.patient.full_name

    @admin.display(description="Protocol")
    def protocol(self, entry: OutcomeAssessment) -> str:
        return entry.treatment.protocol_version.protocol.name

    @admin.display(description="Arm")
    def arm_label(self, entry: OutcomeAssessment) -> str:
        return entry.arm.label if entry.arm else "—"

    @admin.display(description="Erythema (CEA) / patient's redness", ordering="erythema")
    def erythema_words(self, entry: OutcomeAssessment) -> str:
        if entry.erythema is None:
            return "—"
        if entry.source == OutcomeAssessment.Source.PATIENT:
            return f"{entry.erythema} — {outcomes.patient_redness_word(entry.erythema)} (patient's rating)"
        return entry.get_erythema_display()

    @admin.display(description="Photos", ordering="n_photos")
    def photo_count(self, entry: OutcomeAssessment) -> int:
        return entry.n_photos

    @admin.display(description="Chart")
    def healing(self, entry: OutcomeAssessment) -> str:
        url = reverse("admin:outcomes_patient_healing", args=[entry.treatment.patient_id])
        return format_html('<a href="{}">healing chart</a>', url)

    # --- review pages ------------------------------------------------------------------------------
    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        views = ReviewPages(self)
        return [
            path("review/", wrap(views.index), name="outcomes_review"),
            path("review/patient/<int:patient_id>/", wrap(views.patient_healing), name="outcomes_patient_healing"),
            path("review/treatment/<int:treatment_id>/chart.svg", wrap(views.treatment_chart), name="outcomes_treatment_chart"),
            path("review/protocol/<int:protocol_id>/", wrap(views.protocol), name="outcomes_protocol_report"),
            path("review/protocol/<int:protocol_id>/chart.svg", wrap(views.protocol_chart), name="outcomes_protocol_chart"),
            path("review/compare/", wrap(views.compare), name="outcomes_compare"),
            path("review/compare/chart.svg", wrap(views.compare_chart), name="outcomes_compare_chart"),
            path("review/split-face/", wrap(views.split_face), name="outcomes_split_face"),
            path("review/split-face/chart.svg", wrap(views.split_face_chart), name="outcomes_split_face_chart"),
            path("awaiting/", wrap(self.awaiting_view), name="outcomes_awaiting"),
            *super().get_urls(),
        ]

    def awaiting_view(self, request: HttpRequest) -> HttpResponse:
        """The outcome checks awaiting entry, which the dashboard counts."""
        return awaiting_outcomes_view(request, admin_site=self.admin_site)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"review_url": reverse("admin:outcomes_review"), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)


# --- review pages -----------------------------------------------------------------------------------


def _svg(svg: str) -> HttpResponse:
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


class ReviewPages:
    """The review views; thin: parse filters, load scoped objects, call ``patients.review`` and ``patients.charts``."""

    def __init__(self, model_admin: OutcomeAssessmentAdmin) -> None:
        self.model_admin = model_admin

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.model_admin.admin_site.each_context(request),
            "title": title, "opts": OutcomeAssessment._meta, "observational_note": OBSERVATIONAL_NOTE,
            "review_url": reverse("admin:outcomes_review"), **extra,
        }

    def _filters(self, request: HttpRequest) -> tuple[ReviewFilterForm, ReviewFilters | None]:
        form = ReviewFilterForm(request.GET or None, user=request.user)
        if not form.is_bound:
            return form, ReviewFilters()
        return form, form.filters() if form.is_valid() else None

    def _protocol(self, request: HttpRequest, protocol_id: Any) -> Protocol:
        return get_object_or_404(scoped(Protocol.objects.all(), request.user), pk=protocol_id)

    def index(self, request: HttpRequest) -> HttpResponse:
        form, filters = self._filters(request)
        summaries = []
        if filters is not None:
            found = summarise(treatments_for_review(user=request.user, filters=filters), by="protocol", now=timezone.now())
            summaries = sorted(found.values(), key=lambda s: s.label)
        query = (request.GET.get("q") or "").strip()
        patients = []
        if query:
            patients = scoped(Patient.objects.all(), request.user).filter(
                Q(family_name__icontains=query) | Q(given_name__icontains=query) | Q(reference__iexact=query)
            ).select_related("clinic")[:25]
        protocols = scoped(Protocol.objects.all(), request.user).order_by("name")
        context = self._context(
            request, "Review healing", form=form, summaries=summaries, query=query, patients=patients,
            protocols=protocols, filter_query=urlencode(filters.as_query()) if filters else "",
        )
        return TemplateResponse(request, "admin/outcomes/review_index.html", context, status=200 if filters else 400)

    def patient_healing(self, request: HttpRequest, patient_id: int) -> HttpResponse:
        patient = get_object_or_404(scoped(Patient.objects.select_related("clinic"), request.user), pk=patient_id)
        treatments = scoped(Treatment.objects.filter(patient=patient), request.user).select_related(
            "protocol_version__protocol"
        ).order_by("-ended_at")
        measures = by_treatment(measures_for(treatments, now=timezone.now()))
        adverse_events = AdverseEvent.objects.filter(treatment__in=treatments).select_related("arm").order_by("onset_date")
        record_event(
            actor=request.user, action="view", clinic=patient.clinic, obj=patient, request=request,
            detail={"page": "healing chart"},
        )
        rows = [{"treatment": t, "measures": measures.get(t.pk, [])} for t in treatments]
        context = self._context(
            request, f"Healing of {patient.full_name}", patient=patient, rows=rows, adverse_events=adverse_events,
            can_log=can(request.user, Capability.LOG_OUTCOMES, patient.clinic_id),
        )
        return TemplateResponse(request, "admin/outcomes/patient_healing.html", context)

    def treatment_chart(self, request: HttpRequest, treatment_id: int) -> HttpResponse:
        treatment = get_object_or_404(scoped(Treatment.objects.all(), request.user), pk=treatment_id)
        return _svg(charts.treatment_healing_svg(treatment=treatment))

    def protocol(self, request: HttpRequest, protocol_id: int) -> HttpResponse:
        protocol = self._protocol(request, protocol_id)
        form, filters = self._filters(request)
        report = protocol_report(user=request.user, protocol=protocol, filters=filters, now=timezone.now()) if filters else None
        chart_url = reverse("admin:outcomes_protocol_chart", args=[protocol.pk])
        context = self._context(
            request, f"{protocol.name}: healing report", protocol=protocol, form=form, report=report,
            chart_url=f"{chart_url}?{urlencode(filters.as_query())}" if filters else "",
        )
        return TemplateResponse(request, "admin/outcomes/protocol_report.html", context, status=200 if filters else 400)

    def protocol_chart(self, request: HttpRequest, protocol_id: int) -> HttpResponse:
        protocol = self._protocol(request, protocol_id)
        _form, filters = self._filters(request)
        report = protocol_report(user=request.user, protocol=protocol, filters=filters or ReviewFilters(), now=timezone.now())
        series = {protocol.name: report.overall.mean_erythema_by_day}
        if len(report.versions) > 1:
            series = {version.label: version.mean_erythema_by_day for version in report.versions}
        return _svg(charts.mean_erythema_svg(series=series, title=f"Mean erythema by day — {protocol.name}"))

    def _pair(self, request: HttpRequest) -> tuple[Protocol, Protocol] | None:
        first, second = request.GET.get("a", ""), request.GET.get("b", "")
        if row_id(first) is None or row_id(second) is None:
            return None
        return self._protocol(request, first), self._protocol(request, second)

    def compare(self, request: HttpRequest) -> HttpResponse:
        form, filters = self._filters(request)
        pair = self._pair(request)
        summaries = compare_protocols(user=request.user, protocols=pair, filters=filters, now=timezone.now()) if (
            pair and filters
        ) else []
        query = {**(filters.as_query() if filters else {}), **({"a": pair[0].pk, "b": pair[1].pk} if pair else {})}
        context = self._context(
            request, "Two protocols side by side", form=form, pair=pair, summaries=summaries,
            protocols=scoped(Protocol.objects.all(), request.user).order_by("name"),
            chart_url=reverse("admin:outcomes_compare_chart") + "?" + urlencode(query),
        )
        return TemplateResponse(request, "admin/outcomes/protocol_compare.html", context, status=200 if filters else 400)

    def compare_chart(self, request: HttpRequest) -> HttpResponse:
        _form, filters = self._filters(request)
        pair = self._pair(request)
        if pair is None:
            return _svg(charts.mean_erythema_svg(series={}))
        summaries = compare_protocols(user=request.user, protocols=pair, filters=filters or ReviewFilters(), now=timezone.now())
        return _svg(charts.mean_erythema_svg(series={s.label: s.mean_erythema_by_day for s in summaries}))

    def split_face(self, request: HttpRequest) -> HttpResponse:
        form, filters = self._filters(request)
        comparison = split_face_comparison(user=request.user, filters=filters, now=timezone.now()) if filters else None
        context = self._context(
            request, "Split-face arms: exosome against control", form=form, comparison=comparison,
            chart_url=reverse("admin:outcomes_split_face_chart") + "?" + urlencode(filters.as_query() if filters else {}),
        )
        return TemplateResponse(request, "admin/outcomes/split_face.html", context, status=200 if filters else 400)

    def split_face_chart(self, request: HttpRequest) -> HttpResponse:
        _form, filters = self._filters(request)
        comparison = split_face_comparison(user=request.user, filters=filters or ReviewFilters(), now=timezone.now())
        series = {"exosome arm": comparison.erythema_by_day["exosome"], "control arm": comparison.erythema_by_day["control"]}
        return _svg(charts.mean_erythema_svg(series=series, title="Mean erythema by day — split-face arms"))


# --- adverse events --------------------------------------------------------------------------------


class AdverseEventForm(forms.ModelForm):
    correction_reason = forms.CharField(
        required=False, max_length=outcomes.REASON_MAX_LENGTH,
        help_text=(f"Required when you change an event: why ({outcomes.REASON_MIN_LENGTH} to {outcomes.REASON_MAX_LENGTH} "
                   "characters). The earlier state stays in the history."),
    )
    opened_revision = opened_revision_field()
    user: Any = None

    class Meta:
        model = AdverseEvent
        fields = ["treatment", *outcomes.ADVERSE_EVENT_FIELDS]
        widgets = {
            "onset_date": forms.DateInput(attrs={"type": "date"}),
            "resolution_date": forms.DateInput(attrs={"type": "date"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        set_opened_revision(self)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        values = {name: cleaned.get(name) for name in outcomes.ADVERSE_EVENT_FIELDS}
        values["description"] = values["description"] or ""
        values["action_taken"] = values["action_taken"] or ""
        self.values = values
        try:
            if self.instance.pk is None:
                outcomes.check_new_adverse_event(treatment=cleaned["treatment"], by=self.user, values=values)
            else:
                outcomes.check_adverse_event_correction(
                    event=self.instance, by=self.user, changes=values, reason=cleaned.get("correction_reason") or "",
                    based_on=revision_opened_on(cleaned),
                )
        except outcomes.AdverseEventAlreadyRecorded as error:
            url = reverse("admin:patients_adverseevent_change", args=[error.event.pk])
            raise ValidationError(
                format_html('{} <a href="{}" id="recorded-event">Open that event</a>', error.message, url)
            ) from None
        except (ValidationError, PermissionDenied) as error:
            url = reverse("admin:patients_adverseevent_change", args=[self.instance.pk]) if self.instance.pk else ""
            raise with_reload_link(_as_form_error(error), url=url) from None
        return cleaned


@admin.register(AdverseEvent)
class AdverseEventAdmin(BackToTheTreatment, ClinicScopedAdmin):
    form = AdverseEventForm
    change_capability = Capability.LOG_OUTCOMES
    log_views = True
    raw_id_fields = ["treatment"]
    list_display = ["kind", "severity", "patient", "arm_label", "onset_date", "resolution_date", "recorded_by", "notified"]
    list_filter = ["kind", "severity", "treatment__protocol_version__protocol"]
    list_select_related = ["treatment__patient", "arm", "recorded_by"]
    search_fields = ["treatment__patient__family_name", "treatment__patient__reference"]
    date_hierarchy = "onset_date"
    actions = ["send_notification"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["treatment", "recorded_by", "recorded_at", "notified_at"] if obj is not None else []

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[tuple[str | None, dict[str, Any]]]:
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [
            (None, {"fields": ["treatment", "arm", "kind", "severity", ("onset_date", "resolution_date")]}),
            ("Details", {"fields": ["description", "action_taken"]}),
        ]
        if obj is not None:
            fieldsets.append(("Recorded", {"fields": ["recorded_by", "recorded_at", "notified_at"]}))
            if self.has_change_permission(request, obj):
                fieldsets.append(("Correction", {"fields": ["correction_reason", "opened_revision"]}))
        return fieldsets

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form = type(form.__name__, (form,), {"user": request.user})
        _offer_only_its_treatments_arms(form, obj, user=request.user,
                                        may_change=obj is not None and self.has_change_permission(request, obj))
        return form

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "treatment":
            kwargs["queryset"] = scoped(
                Treatment.objects.filter(status=Treatment.Status.RECORDED), request.user, Capability.LOG_OUTCOMES
            )
        if db_field.name == "arm":
            arms = scoped(TreatmentArm.objects.select_related("treatment"), request.user, Capability.LOG_OUTCOMES)
            treatment_id = row_id(request.GET.get("treatment"))
            if treatment_id is not None:  # "Record adverse event…" on a treatment's page: its arms only
                arms = arms.filter(treatment_id=treatment_id)
            return ArmChoiceField(queryset=arms, required=False, help_text="The side affected, for split-face treatments.")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: AdverseEvent, form: Any, change: bool) -> None:
        if change:
            saved = outcomes.correct_adverse_event(
                event=AdverseEvent.objects.get(pk=obj.pk), by=request.user, changes=form.values,
                reason=form.cleaned_data.get("correction_reason") or "", based_on=form.cleaned_data["opened_revision"],
            )
        else:
            saved = outcomes.record_adverse_event(treatment=form.cleaned_data["treatment"], by=request.user, **form.values)
        obj.__dict__.update({k: v for k, v in saved.__dict__.items() if k != "_state"})
        obj._state.adding = False

    @admin.display(description="Patient", ordering="treatment__patient__family_name")
    def patient(self, event: AdverseEvent) -> str:
        return event.treatment.patient.full_name

    @admin.display(description="Arm")
    def arm_label(self, event: AdverseEvent) -> str:
        return event.arm.label if event.arm else "—"

    @admin.display(description="Clinicians emailed", boolean=True)
    def notified(self, event: AdverseEvent) -> bool | None:
        if event.severity not in outcomes.NOTIFY_SEVERITIES:
            return None
        return event.notified_at is not None

    @admin.action(description="Email the clinicians about selected events not yet notified (moderate or worse)",
                  permissions=["change"])
    def send_notification(self, request: HttpRequest, queryset: QuerySet) -> None:
        allowed = scoped(queryset, request.user, Capability.LOG_OUTCOMES).filter(
            severity__in=outcomes.NOTIFY_SEVERITIES, notified_at__isnull=True
        )
        queued = sum(1 for event in allowed.select_related("treatment")
                     if staff_alerts.alert_again_about(event=event, by=request.user, request=request))
        messages.info(request, f"The clinicians will be emailed about {counted(queued, 'event')}; "
                               "“Alerts to clinicians” shows when they were.")


# --- photos --------------------------------------------------------------------------------------------


@admin.register(OutcomePhoto)
class OutcomePhotoAdmin(ClinicScopedAdmin):
    change_capability = Capability.LOG_OUTCOMES
    log_views = True
    list_display = ["preview", "assessment", "patient", "content_type", "size", "uploaded_by", "uploaded_at"]
    list_select_related = ["assessment__treatment__patient", "assessment__arm", "uploaded_by"]
    list_filter = ["content_type"]
    fields = ["preview", "assessment", "content_type", "width", "height", "size_bytes", "uploaded_by", "uploaded_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # photos are attached to an assessment, from its form or the patient's link

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Photo")
    def preview(self, photo: OutcomePhoto) -> str:
        return photo_preview(photo)

    @admin.display(description="Patient")
    def patient(self, photo: OutcomePhoto) -> str:
        return photo.assessment.treatment.patient.full_name

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, photo: OutcomePhoto) -> str:
        return f"{photo.size_bytes / 1024:.0f} KB"
