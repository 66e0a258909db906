"""Admin of the protocols app: protocols and their versions and steps, products and lots, the rule library.

Thin: every change of state goes through ``protocols.versioning`` or
``protocols.defaults``; every queryset through ``clinic.scoping.scoped``.
A published or retired version is shown read-only (its change permission is
refused), with a button to start a new draft instead.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Count, Exists, OuterRef, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from clinic.admin_base import ClinicScopedAdmin, ScopedInline
from clinic.models import Clinic
from clinic.roles import Capability
from clinic.scoping import can, clinic_ids, clinic_of, clinics_for, scoped
from clinic.words import counted, verb
from protocols import lot_states, lots, recalls, rules, versioning
from protocols.defaults import customise_default_rule
from protocols.models import (
    ContraindicationRule,
    ExosomeProduct,
    Procedure,
    ProductLot,
    Protocol,
    ProtocolStep,
    ProtocolVersion,
)
from protocols.quiet_hours import version_warnings

EDIT = Capability.EDIT_PROTOCOLS


class ClinicRequiredMixin:
    """Clinic staff always create rows of a clinic; only the operator writes shared templates."""

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)  # type: ignore[misc]
        field = form.base_fields.get("clinic")
        if field is not None and not request.user.is_superuser:
            # Neither the empty choice nor "Empty for a shared template": not theirs to choose.
            field.required = True
            field.empty_label = None
            field.help_text = ""
        return form

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)  # type: ignore[misc]
        editable = clinic_ids(request.user, EDIT)
        if len(editable) == 1:
            initial.setdefault("clinic", next(iter(editable)))
        return initial


def _owner(model_admin: admin.ModelAdmin, obj: Any) -> str:
    """The list column "owner": the clinic, or the shared library (used as a method of several admins)."""
    return str(obj.clinic) if obj.clinic_id else "Shared (default)"


def _can_edit(request: HttpRequest, obj: Any) -> bool:
    clinic = clinic_of(obj)
    return clinic is not None and can(request.user, EDIT, clinic)


def _object_or_404(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: Any) -> Any:
    obj = model_admin.get_object(request, str(object_id))
    if obj is None:
        raise Http404("Not found")
    return obj


def _page(model_admin: admin.ModelAdmin, request: HttpRequest, template: str, **context: Any) -> TemplateResponse:
    context = {**model_admin.admin_site.each_context(request), "opts": model_admin.model._meta, **context}
    return TemplateResponse(request, template, context)


def _diff_summary(diff: versioning.VersionDiff) -> str:
    """"2 steps changed, 1 added; settings changed" — what the change note should put in words."""
    parts = [f"{len(steps)} step{'s' if len(steps) != 1 else ''} {verb}"
             for steps, verb in ((diff.changed, "changed"), (diff.added, "added"), (diff.removed, "removed")) if steps]
    if diff.settings:
        parts.append("settings changed")
    if diff.added_rules or diff.removed_rules:
        parts.append("rules changed")
    return "; ".join(parts) or "nothing: it is the same as the version before"


def _refusal(request: HttpRequest, error: ValidationError) -> None:
    for message in error.messages:
        messages.error(request, message)


def _warn_of_late_reminders(request: HttpRequest, version: ProtocolVersion) -> None:
    """A warning, not a refusal: the step may still be right, but staff should know the patient is told late."""
    for warning in version_warnings(version):
        messages.warning(request, warning)


# --- protocols and versions ---------------------------------------------------------------


class ProtocolStepForm(forms.ModelForm):
    class Meta:
        model = ProtocolStep
        fields = [
            "order", "kind", "title", "patient_text", "staff_notes", "timing", "offset_value", "offset_unit", "day",
            "local_time", "repeat_count", "repeat_every_days", "avoid_until_day", "product", "sends_reminder",
            "remind_minutes_before",
        ]
        widgets = {
            "patient_text": forms.Textarea(attrs={"rows": 2, "cols": 60}),
            "staff_notes": forms.Textarea(attrs={"rows": 2, "cols": 60}),
            # A time of day on the patient's clock: the admin's "Now" and clock shortcuts have no place here.
            "local_time": forms.TimeInput(format="%H:%M", attrs={"type": "time"}),
        }


class ProtocolStepInline(ScopedInline):
    model = ProtocolStep
    form = ProtocolStepForm
    template = "admin/edit_inline/stacked.html"  # a step has too many fields for one table row
    change_capability = EDIT
    extra = 0
    ordering = ["order", "id"]
    fieldsets = [
        (None, {"fields": [("order", "kind"), "title", "patient_text", "staff_notes"]}),
        ("Timing", {"fields": [
            "timing", ("offset_value", "offset_unit"), ("day", "local_time"), ("repeat_count", "repeat_every_days"),
            "avoid_until_day",
        ]}),
        ("Product and reminder", {"fields": ["product", ("sends_reminder", "remind_minutes_before")]}),
    ]

    def _editable(self, request: HttpRequest, obj: Any) -> bool:
        return obj is not None and not obj.is_frozen and _can_edit(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(request, obj)


@admin.register(ProtocolVersion)
class ProtocolVersionAdmin(ClinicScopedAdmin):
    change_capability = EDIT
    list_display = ["__str__", "protocol", "number", "status", "published_at", "published_by", "step_count"]
    list_filter = ["status", "protocol__procedure"]
    search_fields = ["protocol__name", "change_note"]
    list_select_related = ["protocol", "published_by"]
    inlines = [ProtocolStepInline]
    filter_horizontal = ["added_rules", "removed_rules"]
    readonly_fields = [
        "protocol", "number", "status", "published_at", "published_by", "timeline", "reminders_after_their_step",
    ]
    fieldsets = [
        (None, {"fields": ["protocol", "number", "status", "change_note", "length_days"]}),
        ("Contraindication rules", {
            "description": "The version uses the default rules for its procedure (or your clinic's replacements), "
                           "plus the rules added here, minus the rules removed here.",
            "fields": ["added_rules", "removed_rules"],
        }),
        ("Publication", {"fields": ["published_at", "published_by"]}),
        ("Reminders and quiet hours", {"fields": ["reminders_after_their_step"]}),
        ("Timeline", {"fields": ["timeline"]}),
    ]
    actions = ["start_draft_action"]

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).annotate(step_total=Count("steps"))

    @admin.display(description="steps", ordering="step_total")
    def step_count(self, obj: ProtocolVersion) -> int:
        return obj.step_total

    @admin.display(description="timeline")
    def timeline(self, obj: ProtocolVersion) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("protocols:version-timeline", args=[obj.pk])
        return format_html(
            '<a href="{}"><img src="{}" alt="Timeline of {}" style="max-width:100%;height:auto"></a>', url, url, obj
        )

    @admin.display(description="reminders after their step")
    def reminders_after_their_step(self, obj: ProtocolVersion) -> str:
        if obj.pk is None:
            return "—"
        warnings = version_warnings(obj)
        if not warnings:
            return "None: no reminder is pushed past its step by the quiet hours."
        return format_html(
            '<ul class="messagelist quiet-hours-warnings">{}</ul>',
            format_html_join("", '<li class="warning">{}</li>', ((warning,) for warning in warnings)),
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        _warn_of_late_reminders(request, form.instance)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # versions are started from a protocol ("Create new draft version"), never typed in

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        if obj is not None:
            # Only the library and the protocol's own clinic: someone in two
            # clinics must not attach one clinic's rule to the other's protocol.
            own_or_default = Q(clinic__isnull=True) | Q(clinic_id=obj.protocol.clinic_id)
            for name in ("added_rules", "removed_rules"):
                if name in form.base_fields:
                    field = form.base_fields[name]
                    field.queryset = field.queryset.filter(own_or_default)
            if "added_rules" in form.base_fields:
                # Adding a rule that applies by default changes nothing; one added before stays listed.
                already_applying = rules.default_rule_ids(obj) - set(obj.added_rules.values_list("pk", flat=True))
                field = form.base_fields["added_rules"]
                field.queryset = field.queryset.exclude(pk__in=already_applying)
            if "removed_rules" in form.base_fields:
                # Removing a rule that does not apply by default changes nothing; one removed before stays listed.
                removable = rules.default_rule_ids(obj) | set(obj.removed_rules.values_list("pk", flat=True))
                field = form.base_fields["removed_rules"]
                field.queryset = field.queryset.filter(pk__in=removable)
        return form

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_frozen:
            return False  # published and retired versions are read-only for everyone
        return super().has_change_permission(request, obj)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/publish/", view(self.publish_view), name="protocols_protocolversion_publish"),
            path("<int:pk>/retire/", view(self.retire_view), name="protocols_protocolversion_retire"),
            path("<int:pk>/new-draft/", view(self.new_draft_view), name="protocols_protocolversion_new_draft"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        version = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if version is not None:
            protocol = version.protocol
            editable = _can_edit(request, version)
            previous = protocol.versions.filter(number__lt=version.number).order_by("-number").first()
            context.update(
                version=version, can_edit=editable, previous_version=previous,
                can_publish=editable and version.status == ProtocolVersion.Status.DRAFT,
                can_retire=editable and version.status == ProtocolVersion.Status.PUBLISHED,
                can_start_draft=editable and version.is_frozen and protocol.draft is None,
                existing_draft=protocol.draft if version.is_frozen else None,
            )
        return super().change_view(request, object_id, form_url, extra_context=context)

    def _editable_version(self, request: HttpRequest, pk: int) -> ProtocolVersion:
        version = _object_or_404(self, request, pk)
        if not _can_edit(request, version):
            raise PermissionDenied("You may not edit this clinic's protocols.")
        return version

    def _confirm(
        self, request: HttpRequest, version: ProtocolVersion, *, title: str, explanation: str, button: str,
        warnings: list[str] | None = None,
    ) -> Any:
        return _page(
            self, request, "admin/protocols/confirm_action.html", title=title, explanation=explanation, button=button,
            original=version, cancel_url=reverse("admin:protocols_protocolversion_change", args=[version.pk]),
            warnings=warnings or [],
        )

    def _not_possible(self, request: HttpRequest, version: ProtocolVersion, *, title: str, explanation: str) -> Any:
        """A confirmation page with no button: the action would only be refused."""
        return self._confirm(request, version, title=title, explanation=explanation, button="")

    def publish_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        version = self._editable_version(request, pk)
        if request.method != "POST" and version.status != ProtocolVersion.Status.DRAFT:
            published = version.status == ProtocolVersion.Status.PUBLISHED
            return self._not_possible(
                request, version, title=f"{version} is {'published already' if published else 'retired'}",
                explanation=f"v{version.number} is published already: new treatments use it, and it never changes "
                            "again." if published else f"v{version.number} is retired; only a draft can be "
                            "published. Create a new draft from it to offer its steps again.",
            )
        before = versioning.version_before(version)
        # A version after the first says what changed: asked here, beside what changed, not after a refusal.
        note = request.POST.get("change_note") if before is not None and request.method == "POST" else None
        if request.method == "POST":
            try:
                versioning.publish(version=version, by=request.user, change_note=note)
            except ValidationError as error:
                note_errors = error.message_dict.get("change_note", []) if hasattr(error, "error_dict") else []
                if note is None or not note_errors:
                    _refusal(request, error)  # about the steps or the version: mended on its page
                    return redirect("admin:protocols_protocolversion_change", version.pk)
                return self._publish_page(request, version, before=before, note=note, errors=note_errors)
            messages.success(request, f"{version} is published; new treatments use it from now on.")
            _warn_of_late_reminders(request, version)
            return redirect("admin:protocols_protocolversion_change", version.pk)
        return self._publish_page(request, version, before=before, note=version.change_note, errors=[])

    def _publish_page(self, request: HttpRequest, version: ProtocolVersion, *, before: ProtocolVersion | None,
                      note: str, errors: list[str]) -> TemplateResponse:
        retiring = version.protocol.versions.filter(status=ProtocolVersion.Status.PUBLISHED).exclude(pk=version.pk)
        page = self._confirm(
            request, version, title=f"Publish {version}?", button="Publish",
            explanation="Once published, this version never changes again: new treatments use it and the "
                        "previously published version is retired. Later edits need a new draft version."
                        + "".join(_stranded_screenings(retired) for retired in retiring),
            warnings=version_warnings(version),  # said before publishing, while the steps can still change
        )
        if before is not None:
            diff = versioning.step_diff(old=before, new=version)
            page.context_data["change_note"] = {
                "value": note, "errors": errors, "before": before, "min_length": versioning.CHANGE_NOTE_MIN_LENGTH,
                "summary": _diff_summary(diff),
                "diff_url": reverse("admin:protocols_protocol_diff", args=[version.protocol_id])
                + "?" + urlencode({"old": before.pk, "new": version.pk}),
            }
            if errors:
                page.status_code = 400
        return page

    def retire_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        version = self._editable_version(request, pk)
        if request.method != "POST" and version.status != ProtocolVersion.Status.PUBLISHED:
            return self._not_possible(
                request, version, title=f"{version} cannot be retired",
                explanation=f"v{version.number} is {version.status}; only a published version can be retired.",
            )
        if request.method != "POST":
            return self._confirm(
                request, version, title=f"Retire {version}?", button="Retire",
                explanation="A retired version is no longer offered for new treatments. Treatments that used it "
                            "keep it, unchanged." + _stranded_screenings(version),
                warnings=[_out_of_service(version.protocol)] if versioning.leaves_none_published(version) else [],
            )
        none_left = versioning.leaves_none_published(version)
        try:
            versioning.retire(version=version, by=request.user)
        except ValidationError as error:
            _refusal(request, error)
        else:
            messages.success(request, f"{version} is retired; treatments that used it keep it.")
            if none_left:
                messages.warning(request, _out_of_service(version.protocol))
        return redirect("admin:protocols_protocolversion_change", version.pk)

    def new_draft_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        version = self._editable_version(request, pk)
        if request.method != "POST":
            return self._confirm(
                request, version, title=f"Create a new draft from v{version.number}?", button="Create new draft version",
                explanation=f"The draft copies the steps and rule changes of v{version.number}. Edit it, then publish "
                            f"it; v{version.number} stays exactly as it is.",
            )
        try:
            draft = versioning.start_draft(protocol=version.protocol, from_version=version, by=request.user)
        except ValidationError as error:
            _refusal(request, error)
            return redirect("admin:protocols_protocolversion_change", version.pk)
        messages.success(request, f"Draft v{draft.number} started from v{version.number}; edit it and publish it.")
        return redirect("admin:protocols_protocolversion_change", draft.pk)

    @admin.action(description="Create new draft version from the selected version", permissions=["change"])
    def start_draft_action(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        for version in queryset.select_related("protocol"):
            if not _can_edit(request, version):
                messages.error(request, f"You may not edit {version.protocol}.")
                continue
            try:
                draft = versioning.start_draft(protocol=version.protocol, from_version=version, by=request.user)
            except ValidationError as error:
                _refusal(request, error)
            else:
                messages.success(request, f"Started {draft}.")


class VersionChoiceForm(forms.Form):
    """Pick two versions of one protocol to compare."""

    old = forms.ModelChoiceField(queryset=ProtocolVersion.objects.none(), label="From")
    new = forms.ModelChoiceField(queryset=ProtocolVersion.objects.none(), label="To")

    def __init__(self, *args: Any, versions: models.QuerySet, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["old"].queryset = versions
        self.fields["new"].queryset = versions


@admin.register(Protocol)
class ProtocolAdmin(ClinicRequiredMixin, ClinicScopedAdmin):
    change_capability = EDIT
    list_display = ["name", "procedure", "owner", "status_label", "current_version_label"]
    list_filter = ["procedure", "clinic"]
    search_fields = ["name", "description"]
    list_select_related = ["clinic"]
    fields = ["clinic", "name", "procedure", "description"]
    actions = ["start_draft_action"]

    owner = admin.display(description="owner", ordering="clinic__name")(_owner)

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).prefetch_related("versions")

    @admin.display(description="status")
    def status_label(self, obj: Protocol) -> str:
        return obj.status

    @admin.display(description="current version")
    def current_version_label(self, obj: Protocol) -> str:
        current = obj.current_version
        return f"v{current.number}" if current else "—"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is not None and obj.versions.exclude(status=ProtocolVersion.Status.DRAFT).exists():
            return ["clinic", "procedure"]  # frozen versions screen against this procedure
        return []

    def save_model(self, request: HttpRequest, obj: Protocol, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            versioning.start_draft(protocol=obj, by=request.user)

    def response_add(self, request: HttpRequest, obj: Protocol, post_url_continue: str | None = None) -> HttpResponse:
        if "_addanother" in request.POST or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        messages.success(request, f"{obj} created with draft v1: add its steps, then publish it.")
        return redirect("admin:protocols_protocolversion_change", obj.draft.pk)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/versions/", view(self.history_view_page), name="protocols_protocol_versions"),
            path("<int:pk>/diff/", view(self.diff_view), name="protocols_protocol_diff"),
            path("<int:pk>/new-draft/", view(self.new_draft_view), name="protocols_protocol_new_draft"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        protocol = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if protocol is not None:
            context.update(self._version_context(request, protocol))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def _version_context(self, request: HttpRequest, protocol: Protocol) -> dict[str, Any]:
        versions = list(
            protocol.versions.select_related("published_by").annotate(step_total=Count("steps")).order_by("-number")
        )
        for newer, older in zip(versions, versions[1:], strict=False):
            newer.previous = older  # for the "what changed" link of each row
        return {
            "protocol": protocol,
            "versions": versions,
            "current_version": protocol.current_version,
            "draft_version": protocol.draft,
            "can_start_draft": _can_edit(request, protocol) and protocol.draft is None and bool(versions),
            "diff_form": VersionChoiceForm(versions=protocol.versions.all()) if len(versions) > 1 else None,
        }

    def history_view_page(self, request: HttpRequest, pk: int) -> HttpResponse:
        protocol = _object_or_404(self, request, pk)
        return _page(
            self, request, "admin/protocols/protocol/version_history.html",
            title=f"Version history of {protocol}", original=protocol, **self._version_context(request, protocol),
        )

    def diff_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        protocol = _object_or_404(self, request, pk)
        form = VersionChoiceForm(request.GET or None, versions=protocol.versions.all())
        diff = None
        if form.is_valid():
            diff = versioning.step_diff(old=form.cleaned_data["old"], new=form.cleaned_data["new"])
        return _page(
            self, request, "admin/protocols/protocol/version_diff.html",
            title=f"Compare versions of {protocol}", original=protocol, protocol=protocol, form=form, diff=diff,
        )

    def new_draft_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        protocol = _object_or_404(self, request, pk)
        if not _can_edit(request, protocol):
            raise PermissionDenied("You may not edit this clinic's protocols.")
        if request.method != "POST":
            return _page(
                self, request, "admin/protocols/confirm_action.html", title=f"Create a new draft of {protocol}?",
                explanation="The draft copies the steps and rule changes of the newest published version, which "
                            "stays exactly as it is. Edit the draft, then publish it.",
                button="Create new draft version", original=protocol,
                cancel_url=reverse("admin:protocols_protocol_change", args=[protocol.pk]),
            )
        try:
            draft = versioning.start_draft(protocol=protocol, by=request.user)
        except ValidationError as error:
            _refusal(request, error)
            return redirect("admin:protocols_protocol_change", protocol.pk)
        messages.success(request, f"Draft v{draft.number} started; edit it and publish it.")
        return redirect("admin:protocols_protocolversion_change", draft.pk)

    @admin.action(description="Create new draft version", permissions=["change"])
    def start_draft_action(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        for protocol in queryset:
            if not _can_edit(request, protocol):
                messages.error(request, f"You may not edit {protocol}.")
                continue
            try:
                draft = versioning.start_draft(protocol=protocol, by=request.user)
            except ValidationError as error:
                _refusal(request, error)
            else:
                messages.success(request, f"Started {draft}.")


# --- products and lots -----------------------------------------------------------------------


@admin.register(ExosomeProduct)
class ExosomeProductAdmin(ClinicRequiredMixin, ClinicScopedAdmin):
    change_capability = EDIT
    list_display = ["name", "manufacturer", "source", "cell_type", "plated", "regulatory_status", "owner", "is_active"]
    list_filter = ["source", "plated", "regulatory_status", "is_active"]
    search_fields = ["name", "manufacturer", "cell_type"]
    list_select_related = ["clinic"]
    fieldsets = [
        (None, {"fields": ["clinic", "name", "manufacturer", "is_active"]}),
        ("Origin", {"fields": ["source", "cell_type", "plated"]}),
        ("What the maker publishes", {"fields": [
            "characterisation", "publishes_particle_size", "publishes_markers", "publishes_potency_assay",
        ]}),
        ("Third-party testing", {"fields": ["tested_sterility", "tested_endotoxin", "tested_vesicle_concentration"]}),
        ("Storage and regulation", {"fields": [
            "storage_requirements", ("storage_min_celsius", "storage_max_celsius"), "regulatory_status", "notes",
        ]}),
    ]

    owner = admin.display(description="owner", ordering="clinic__name")(_owner)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        product = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if product is not None:
            lots = scoped(ProductLot.objects.filter(product=product), request.user).select_related("clinic")
            product_lots = list(lots.annotate(application_total=Count("applications")).order_by("-expiry_date"))
            for lot in product_lots:
                lot.state_today = lot_states.LABELS[lot_states.state_today(lot)]
            context.update(product_lots=product_lots)
        return super().change_view(request, object_id, form_url, extra_context=context)


class CertificateInput(forms.ClearableFileInput):
    """Links the current certificate to the staff-only download view, never to a media URL."""

    def __init__(self, *args: Any, lot: ProductLot | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lot = lot

    def format_value(self, value: Any) -> Any:
        if value and self.lot is not None and self.lot.pk and getattr(value, "name", ""):
            return _ProtectedFile(value.name, reverse("protocols:lot-certificate", args=[self.lot.pk]))
        return super().format_value(value)


class _ProtectedFile:
    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url

    def __str__(self) -> str:
        return self.name.rsplit("/", 1)[-1]


class LotStateFilter(admin.SimpleListFilter):
    title = "state today"
    parameter_name = "state"

    #: each state's lots, given the clinic's today; "recalled" is not a matter of the day
    CONDITIONS = {
        lot_states.USABLE: lot_states.usable, lot_states.NOT_RECEIVED: lot_states.not_received,
        lot_states.EXPIRED: lot_states.expired,
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        states = [lot_states.USABLE, lot_states.NOT_RECEIVED, lot_states.EXPIRED, lot_states.RECALLED]
        return [(state, lot_states.LABELS[state]) for state in states]

    def queryset(self, request: HttpRequest, queryset: models.QuerySet) -> models.QuerySet:
        if self.value() == lot_states.RECALLED:
            return queryset.filter(recalled=True)
        condition = self.CONDITIONS.get(self.value() or "")
        if condition is None:
            return queryset
        # Each lot on its own clinic's today: at 23:30 UTC it is already tomorrow in Sydney.
        return queryset.filter(lot_states.on_each_clinics_today(condition, clinics=clinics_for(request.user)))


def _out_of_service(protocol: Protocol) -> str:
    draft = protocol.draft
    waiting = f" Its draft v{draft.number} is not published yet." if draft is not None else ""
    return (f"{protocol.name} will have no published version: no patient can be screened or treated for it until "
            f"you publish one.{waiting}")


def _stranded_screenings(retiring: ProtocolVersion) -> str:
    """What retiring ``retiring`` does to patients screened for it and not yet treated, said before it is done."""
    from patients.screenings import waiting_screenings

    waiting = waiting_screenings(retiring)
    if not waiting:
        return ""
    return (f" {counted(waiting, 'screening')} run for {retiring} in the last 30 days "
            f"{verb(waiting, 'has', 'have')} not been used for a treatment; once it is retired "
            f"{verb(waiting, 'it cannot clear one, and that patient', 'they cannot clear one, and those patients')} "
            "must be screened again.")


class ProductLotForm(forms.ModelForm):
    """A lot; unticking "Recalled" lifts the recall, which needs a clinic admin and a written reason."""

    recall_lift_reason = forms.CharField(
        label="Reason for lifting the recall", required=False, widget=forms.Textarea(attrs={"rows": 2}),
        max_length=lots.LIFT_REASON_MAX_LENGTH,
        help_text=(f"Only when unticking “Recalled”: why the lot is safe to use again, in a sentence (at least "
                   f"{lots.LIFT_REASON_MIN_LENGTH} characters). Only a clinic admin may lift a recall; the reason "
                   "is kept in the lot's history and the access log."),
    )
    recall_as_opened = forms.CharField(widget=forms.HiddenInput, required=False)
    #: who is saving the form, set by ProductLotAdmin.get_form
    user: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and "recall_as_opened" in self.fields:
            # The recall state the page showed: saved over a recall since lifted (or entered), the stale
            # "Recalled" box would recall the lot again (or lift it) with nobody having decided it.
            self.fields["recall_as_opened"].initial = "1" if self.instance.recalled else "0"
    #: whether the valid form lifts the recall, decided in clean()
    lifts_recall = False

    class Meta:
        model = ProductLot
        fields = ["clinic", "product", "lot_number", "received_date", "expiry_date", "storage_checks", "certificate",
                  "recalled", "recall_reason"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # The instance still holds the stored values here: the form's are copied onto it after clean().
        opened = cleaned.get("recall_as_opened")
        if self.instance.pk is not None and opened in ("0", "1") and (opened == "1") != self.instance.recalled:
            history = self.instance.history.select_related("history_user").first()
            by = f" by {history.history_user}" if history and history.history_user else ""
            now = "recalled" if self.instance.recalled else "no longer recalled"
            raise ValidationError(
                f"Lot {self.instance.lot_number} was {now} since this page was opened{by}: nothing was saved. "
                "Reload the lot and make your change again."
            )
        self.lifts_recall = lots.is_lifting(self.instance, cleaned.get("recalled"))
        if self.lifts_recall:
            try:
                cleaned["recall_lift_reason"] = lots.check_lift(
                    lot=self.instance, by=self.user, reason=cleaned.get("recall_lift_reason")
                )
                # The admin's change view is one transaction: the lock holds until save_model has lifted it.
                lots.lock_recall(self.instance)
            except PermissionDenied as refused:
                self.add_error("recalled", str(refused))
            except ValidationError as refused:
                self.add_error(None, refused)
        return cleaned


@admin.register(ProductLot)
class ProductLotAdmin(ClinicScopedAdmin):
    form = ProductLotForm
    change_capability = EDIT
    list_display = ["lot_number", "product", "clinic", "received_date", "expiry_date", "state", "application_count"]
    list_filter = [LotStateFilter, "product", "clinic", "recalled"]
    search_fields = ["lot_number", "product__name"]
    list_select_related = ["product", "clinic"]
    date_hierarchy = "expiry_date"
    readonly_fields = ["recalled_at"]
    fieldsets = [
        (None, {"fields": ["clinic", "product", "lot_number", ("received_date", "expiry_date")]}),
        ("Storage and certificate", {"fields": ["storage_checks", "certificate"]}),
        ("Recall", {"fields": ["recalled", "recall_reason", "recalled_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).annotate(application_total=Count("applications"))

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        editable = clinic_ids(request.user, EDIT)
        if len(editable) == 1:
            initial.setdefault("clinic", next(iter(editable)))
        return initial

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or not self.has_change_permission(request, obj):
            return fieldsets
        # The recall state the page showed, for whoever may edit it; and, of a recalled lot only, the reason
        # used when "Recalled" is unticked.
        added = ["recall_as_opened", "recall_lift_reason"] if obj.recalled else ["recall_as_opened"]
        return [
            (name, {**options, "fields": [*options["fields"], *added]}) if name == "Recall" else (name, options)
            for name, options in fieldsets
        ]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        form.user = request.user
        if "certificate" in form.base_fields:
            form.base_fields["certificate"].widget = CertificateInput(lot=obj)
        if obj is None or not obj.recalled:
            form.base_fields.pop("recall_lift_reason", None)
        return form

    @admin.display(description="state today")
    def state(self, obj: ProductLot) -> str:
        return obj.unusable_reason(lot_states.clinic_today(obj)) or "Usable"

    @admin.display(description="applications", ordering="application_total")
    def application_count(self, obj: ProductLot) -> int:
        return obj.application_total

    def save_model(self, request: HttpRequest, obj: ProductLot, form: Any, change: bool) -> None:
        if change and getattr(form, "lifts_recall", False):
            lots.lift_recall(lot=obj, by=request.user, reason=form.cleaned_data["recall_lift_reason"], request=request)
            messages.info(request, f"The recall of lot {obj.lot_number} is lifted: it can be applied again. "
                                   "The reason is kept in the lot's history and the access log.")
            return
        super().save_model(request, obj, form, change)
        if obj.recalled and "recalled" in form.changed_data:
            treated = recalls.record_recall(lot=obj, by=request.user, request=request)
            messages.warning(request, self._recall_message(request, obj, treated))
        elif change and "recall_lift_reason" not in form.fields and request.POST.get("recall_lift_reason", "").strip():
            # The page was opened while the lot was recalled, and someone lifted it before this save.
            lifted = lots.lifted_recalls(obj)
            by = f" by {lifted[0].lifted_by}" if lifted else ""
            messages.warning(request, f"The recall of lot {obj.lot_number} had already been lifted{by} before you "
                                      "saved: your reason was not recorded. The lot's page shows the reason given.")

    def _recall_message(self, request: HttpRequest, lot: ProductLot, treated: int) -> str:
        """What the clinic does next: find and contact everyone who received the lot (``treated`` patients)."""
        recalled = f"Lot {lot.lot_number} is recalled from now on: it can no longer be applied."
        if not treated:
            return f"{recalled} No patient has received it."
        if can(request.user, Capability.EXPORT, lot.clinic_id):
            download = "with the recall list to download"
        else:
            download = "and a clinic admin or auditor can download the recall list there"
        return (f"{recalled} {counted(treated, 'patient')} received it; their treatments are listed on the lot's page, "
                f"{download}.")

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        lot = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if lot is not None:
            context["lot_applications"] = lot_applications(lot=lot, user=request.user)
            # For any lot, recalled or not: a clinic may trace a suspect lot before recalling it.
            if can(request.user, Capability.EXPORT, lot.clinic_id):
                context["recall_list_url"] = reverse("admin:protocols_productlot_recall_list", args=[lot.pk])
            context["lifted_recalls"] = lots.lifted_recalls(lot)
        return super().change_view(request, object_id, form_url, extra_context=context)

    def get_urls(self) -> list[Any]:
        return [
            path("<int:pk>/recall-list/", self.admin_site.admin_view(self.recall_list_view),
                 name="protocols_productlot_recall_list"),
            *super().get_urls(),
        ]

    def recall_list_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The lot's recall list as a CSV download, kept as an export (who, when, manifest) and in the access log."""
        from patients import exports
        from patients.admin.exports import streaming_download
        from patients.models import Export

        lot = _object_or_404(self, request, pk)
        if not can(request.user, Capability.EXPORT, lot.clinic_id):
            raise PermissionDenied("The recall list needs the clinic admin or auditor role.")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        export_request = exports.ExportRequest(
            clinic=lot.clinic, kind=Export.Kind.RECALL, format=Export.Format.CSV, identified=True, lot=lot
        )
        try:
            export = exports.start_export(user=request.user, request=export_request)
        except exports.ExportRequestError as refused:
            messages.error(request, " ".join(m for found in refused.errors.values() for m in found))
            return redirect("admin:protocols_productlot_change", lot.pk)
        if export.streamed:
            return streaming_download(export, request=request)
        # A list too long to stream runs as a task; its page shows progress and the download.
        return redirect("admin:patients_export_change", export.pk)


def lot_applications(*, lot: ProductLot, user: Any) -> models.QuerySet:
    """Which treatments used this lot: the applications of ``lot`` that ``user`` may see, newest first."""
    from patients.models import ExosomeApplication

    applications = scoped(ExosomeApplication.objects.filter(lot=lot), user).select_related(
        "treatment__patient", "treatment__protocol_version__protocol", "applied_by", "arm"
    )
    return applications.order_by("-treatment__ended_at")


# --- rule library -----------------------------------------------------------------------------


class RuleForm(forms.ModelForm):
    procedures = forms.MultipleChoiceField(
        choices=Procedure.choices, widget=forms.CheckboxSelectMultiple, required=False,
        help_text="Tick none for every procedure.",
    )
    values = forms.CharField(
        required=False, help_text="For 'answer is one of': the answers, separated by commas (e.g. IV, V, VI).",
    )

    class Meta:
        model = ContraindicationRule
        fields = [
            "clinic", "code", "is_active", "fact", "condition", "window_days", "values", "procedures", "applies_to",
            "severity", "message", "mitigation", "citation",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and isinstance(self.instance.values, list):
            self.initial["values"] = ", ".join(map(str, self.instance.values))

    def clean_values(self) -> list[str]:
        raw = self.cleaned_data.get("values") or ""
        return [part.strip() for part in raw.split(",") if part.strip()]


class RuleOwnerFilter(admin.SimpleListFilter):
    title = "library"
    parameter_name = "library"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("default", "Default library"), ("clinic", "Clinic rules")]

    def queryset(self, request: HttpRequest, queryset: models.QuerySet) -> models.QuerySet:
        if self.value() == "default":
            return queryset.filter(clinic__isnull=True)
        if self.value() == "clinic":
            return queryset.filter(clinic__isnull=False)
        return queryset


class CustomiseForm(forms.Form):
    clinic = forms.ModelChoiceField(queryset=Clinic.objects.none(), label="Customise for")

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["clinic"].queryset = clinics_for(user, EDIT)


@admin.register(ContraindicationRule)
class ContraindicationRuleAdmin(ClinicRequiredMixin, ClinicScopedAdmin):
    change_capability = EDIT
    form = RuleForm
    list_display = ["code", "fact", "severity", "applies_to", "procedure_list", "window_days", "owner", "replaced",
                    "is_active"]
    list_filter = [RuleOwnerFilter, "severity", "applies_to", "is_active", "fact"]
    search_fields = ["code", "message", "citation"]
    list_select_related = ["clinic"]
    fieldsets = [
        (None, {"fields": ["clinic", "code", "is_active"]}),
        ("Condition", {"fields": ["fact", "condition", "window_days", "values"]}),
        ("Scope and severity", {"fields": ["procedures", "applies_to", "severity"]}),
        ("What staff see", {"fields": ["message", "mitigation", "citation"]}),
    ]
    actions = ["customise_action"]

    owner = admin.display(description="library", ordering="clinic__name")(_owner)

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        own = ContraindicationRule.objects.filter(
            code=OuterRef("code"), clinic_id__in=clinic_ids(request.user), clinic__isnull=False
        )
        return super().get_queryset(request).annotate(replaced_here=Exists(own))

    @admin.display(description="procedures")
    def procedure_list(self, obj: ContraindicationRule) -> str:
        labels = dict(Procedure.choices)
        return ", ".join(labels.get(code, code) for code in obj.procedures) or "all"

    @admin.display(description="replaced by your clinic", boolean=True)
    def replaced(self, obj: ContraindicationRule) -> bool | None:
        return bool(obj.replaced_here) if obj.clinic_id is None else None

    def get_urls(self) -> list[Any]:
        return [
            path("<int:pk>/customise/", self.admin_site.admin_view(self.customise_view),
                 name="protocols_contraindicationrule_customise"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        rule = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if rule is not None and rule.clinic_id is None:
            context["can_customise"] = bool(clinic_ids(request.user, EDIT))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def customise_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        rule = _object_or_404(self, request, pk)
        if request.method != "POST":
            return self._customise_page(request, [rule], CustomiseForm(user=request.user))
        return self._customise(request, [rule]) or redirect("admin:protocols_contraindicationrule_change", rule.pk)

    @admin.action(description="Customise for my clinic (copy the default)", permissions=["change"])
    def customise_action(self, request: HttpRequest, queryset: models.QuerySet) -> HttpResponse | None:
        return self._customise(request, list(queryset))

    def _customise(self, request: HttpRequest, rules: list[ContraindicationRule]) -> HttpResponse | None:
        defaults = [rule for rule in rules if rule.clinic_id is None]
        if not defaults:
            messages.error(request, "Only default rules can be customised; clinic rules are edited directly.")
            return None
        editable = list(clinics_for(request.user, EDIT))
        if not editable:
            raise PermissionDenied("You may not edit your clinic's rules.")
        form = CustomiseForm(request.POST if "clinic" in request.POST else None, user=request.user)
        if len(editable) == 1:
            clinic = editable[0]
        elif form.is_valid():
            clinic = form.cleaned_data["clinic"]
        else:
            return self._customise_page(request, defaults, form)
        copies = [customise_default_rule(rule=rule, clinic=clinic, by=request.user) for rule in defaults]
        one = len(copies) == 1
        messages.success(request, f"{counted(len(copies), 'rule')} {'is' if one else 'are'} now {clinic}'s own; "
                                  f"edit {'it' if one else 'them'} to change how {'it screens' if one else 'they screen'}.")
        if len(copies) == 1:
            return redirect("admin:protocols_contraindicationrule_change", copies[0].pk)
        return HttpResponseRedirect(reverse("admin:protocols_contraindicationrule_changelist") + "?library=clinic")

    def _customise_page(self, request: HttpRequest, rules: list[ContraindicationRule], form: CustomiseForm) -> Any:
        return _page(
            self, request, "admin/protocols/contraindicationrule/customise.html",
            title="Customise default rules for your clinic", rules=rules, form=form,
            action_checkbox_name=admin.helpers.ACTION_CHECKBOX_NAME, via_action="action" in request.POST,
        )
