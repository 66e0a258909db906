"""Admin for clinics, memberships and the access log."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db import models
from django.http import Http404, HttpRequest

from clinic import memberships, settings_changes, two_factor
from clinic.accounts import ACCOUNT_FIELDS, may_edit, record_account_change, save_account, why_not_editable
from clinic.admin_access_log import (
    AccessLogChangeList,
    ActorFilter,
    PatientFilter,
    RecordTypeFilter,
    attach_record_urls,
    detail_lines,
    record_link,
)
from clinic.admin_base import ClinicScopedAdmin, ScopedInline, ordered
from clinic.admin_invitations import StaffInvitationAdminMixin
from clinic.invitations import awaits_password
from clinic.models import AuditEvent, Clinic, Membership
from clinic.my_account import AccountForm, UniqueAddressForm
from clinic.roles import Capability
from clinic.scoping import can_anywhere, clinic_ids, sees_several_clinics
from clinic.words import counted, verb


def colleagues(user: Any) -> models.QuerySet:
    """The people whose accounts ``user`` may see: everyone for the operator, else members of the clinics they manage."""
    people = get_user_model().objects.all()
    if user.is_superuser:
        return people
    return people.filter(memberships__clinic_id__in=clinic_ids(user, Capability.MANAGE_CLINIC)).distinct()


class ColleagueChoiceMixin:
    """A membership's person is chosen among colleagues, like the autocomplete offers.

    The select shows the label of the chosen id from the field's queryset: with
    every user in it, ``?user=<id>`` printed another clinic's staff member.
    """

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":
            kwargs["queryset"] = colleagues(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]


class MembershipFormSet(forms.BaseInlineFormSet):
    """The clinic's memberships, saved only if the clinic keeps an active clinic admin."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors) or self.instance.pk is None:
            return
        leaving, joining = set(), 0
        for form in self.forms:
            if not form.has_changed() or not hasattr(form, "cleaned_data"):
                continue
            stays_admin = memberships.is_active_admin(form.cleaned_data.get("role"), form.cleaned_data.get("is_active"))
            stored = form.initial
            was_admin = form.instance.pk is not None and memberships.is_active_admin(
                stored.get("role"), stored.get("is_active")
            )
            if was_admin and not stays_admin:
                leaving.add(form.instance.pk)
            elif stays_admin and not was_admin:
                joining += 1
        if leaving:
            memberships.check_keeps_an_admin(self.instance, leaving=leaving, joining=joining)


class MembershipForm(forms.ModelForm):
    """A membership, saved only if its clinic keeps an active clinic admin."""

    class Meta:
        model = Membership
        fields = ["user", "clinic", "role", "is_active"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.instance.pk is None or self.errors:
            return cleaned
        stored = Membership.objects.select_related("clinic").get(pk=self.instance.pk)
        stays = (cleaned.get("clinic") == stored.clinic
                 and memberships.is_active_admin(cleaned.get("role"), cleaned.get("is_active")))
        if memberships.is_active_admin(stored.role, stored.is_active) and not stays:
            memberships.check_keeps_an_admin(stored.clinic, leaving={stored.pk})
        return cleaned


class MembershipInline(ColleagueChoiceMixin, ScopedInline):
    model = Membership
    formset = MembershipFormSet
    fields = ["user", "role", "is_active"]
    autocomplete_fields = ["user"]
    change_capability = Capability.MANAGE_CLINIC


URGENT_PHONE_MISSING = (
    "This clinic has no urgent phone number. Patients are told to call you when something is urgent after a "
    "procedure; add the number so their pages and reminder emails show it."
)


@admin.register(Clinic)
class ClinicAdmin(ClinicScopedAdmin):
    change_capability = Capability.MANAGE_CLINIC
    list_display = ["name", "time_zone", "contact_email", "quiet_hours_start", "quiet_hours_end"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "contact_email", "urgent_phone", "sender_name"]}),
        ("Time", {"fields": ["time_zone", "quiet_hours_start", "quiet_hours_end"]}),
        ("Rules", {"fields": ["intake_max_age_days", "require_two_factor"]}),
    ]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        # New tenants are created by the operator, not by a clinic's own staff.
        return request.user.is_superuser

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        if request.method == "GET":
            clinic = self.get_object(request, object_id)
            if clinic is not None and not clinic.urgent_phone:
                messages.warning(request, URGENT_PHONE_MISSING)
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Clinic, form: Any, change: bool) -> None:
        before = settings_changes.stored_settings(obj) if change else None
        super().save_model(request, obj, form, change)
        if before is not None:
            settings_changes.record_settings_change(clinic=obj, before=before, by=request.user, request=request)
        if not obj.urgent_phone:
            messages.warning(request, URGENT_PHONE_MISSING)
        if change:
            # In the admin's transaction: the clinic's new clock and its reminders' new times are saved together.
            from patients.admin.treatments import recomputed_summary
            from patients.treatments import recompute_for_clinic_time

            result = recompute_for_clinic_time(clinic=obj, changed=form.changed_data, by=request.user, request=request)
            if result.treatments:
                messages.info(request, f"Reminders not yet sent of {counted(result.treatments, 'treatment')} follow the new "
                                       f"settings: {recomputed_summary(result.reminders)}.")

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # After the memberships: a member added or deactivated in the same save counts as they now stand.
        if change and "require_two_factor" in form.changed_data:
            stopped = two_factor.record_rule_change(clinic=form.instance, by=request.user, request=request)
            if form.instance.require_two_factor:
                messages.warning(request, two_factor_switched_on(stopped))


def two_factor_switched_on(stopped: int) -> str:
    """What the clinic admin is told on switching two-factor on: whose API tokens it stops (a count, not names)."""
    if not stopped:
        return "Two-factor sign-in is now required. No member's API token stops working."
    tokens = counted(stopped, "member's API token", "members' API tokens")
    return (f"Two-factor sign-in is now required. {tokens} {verb(stopped, 'stops', 'stop')} working until they "
            "set up two-factor sign-in and request a new token.")


@admin.register(Membership)
class MembershipAdmin(StaffInvitationAdminMixin, ColleagueChoiceMixin, ClinicScopedAdmin):
    form = MembershipForm
    change_capability = Capability.MANAGE_CLINIC
    list_display = ["user", "clinic", "role", "is_active", "sign_in"]
    list_select_related = ["user", "clinic"]
    list_filter = ["clinic", "role", "is_active"]
    search_fields = ["user__username", "user__email"]
    autocomplete_fields = ["user"]

    @admin.display(description="Sign-in")
    def sign_in(self, membership: Membership) -> str:
        # Who has not chosen a password yet: their invitation can be sent again from the actions above.
        return "Invitation not yet accepted" if awaits_password(membership) else "—"


@admin.register(AuditEvent)
class AuditEventAdmin(ClinicScopedAdmin):
    list_display = ["created_at", "actor_label", "action", "record", "details", "clinic", "request_id"]
    # The clinic may be empty (operator actions), and Django's automatic
    # select_related follows only required foreign keys: name it, or every row queries its clinic.
    list_select_related = ["clinic"]
    list_filter = ["action", ("actor", ActorFilter), RecordTypeFilter, PatientFilter, "clinic"]
    # The name the entry was written with and the account's name now (it may have been renamed);
    # a record's id and a request id exactly, or "12" would find 112 and 120 too, and any request id with "12" in it.
    search_fields = ["actor_label", "actor__username", "action", "object_type", "=object_id", "=request_id"]
    search_help_text = (
        "A person's username, an action (patient.view), a record type (treatment) or id, a whole request id. "
        "Several words find entries matching all of them, e.g. treatment 12."
    )
    date_hierarchy = "created_at"
    ordering = ["-id"]  # newest first: what an auditor opens the log for
    readonly_fields = [*(f.name for f in AuditEvent._meta.fields), "record", "full_details"]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type:
        return AccessLogChangeList

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        event = super().get_object(request, object_id, from_field)
        if event is not None:
            attach_record_urls([event], request, self.admin_site)
        return event

    @admin.display(description="Record", ordering="object_type")
    def record(self, event: AuditEvent) -> str:
        return record_link(event)

    @admin.display(description="Detail")
    def details(self, event: AuditEvent) -> str:
        return detail_lines(event.detail, shorten=True)

    @admin.display(description="Detail, in words")
    def full_details(self, event: AuditEvent) -> str:
        return detail_lines(event.detail, shorten=False)

    def get_queryset(self, request: HttpRequest) -> Any:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(clinic_id__in=clinic_ids(request.user, Capability.VIEW_AUDIT))

    def lists_several_clinics(self, request: HttpRequest) -> bool:
        # The log shows the clinics whose log the user may read, which may be fewer than those they work in.
        return sees_several_clinics(request.user, Capability.VIEW_AUDIT)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_anywhere(request.user, Capability.VIEW_AUDIT)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_anywhere(request.user, Capability.VIEW_AUDIT)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class StaffUserAdmin(admin.ModelAdmin):
    """Users are listed only to the operator and, for autocomplete, limited to colleagues.

    A clinic admin sees a colleague's name and address, and changes them where
    ``clinic.accounts`` allows; every change of them is logged (``account.updated``).
    """

    form = UniqueAddressForm

    search_fields = ["username", "email", "first_name", "last_name"]
    list_display = ["username", "email", "first_name", "last_name", "is_active"]
    #: what a clinic admin sees of a colleague: who they are, not their password hash, permissions or sign-ins
    COLLEAGUE_FIELDS = ["username", "first_name", "last_name", "email"]

    def get_queryset(self, request: HttpRequest) -> Any:
        return ordered(colleagues(request.user))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if not request.user.is_superuser:
            return list(self.COLLEAGUE_FIELDS)
        # The hash is never shown, nor edited as text: a password is set by its owner (their invitation link).
        return [name for name in super().get_fields(request, obj) if name != "password"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if not request.user.is_superuser:
            kwargs["form"] = AccountForm  # a name and an address, the address required
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if not request.user.is_superuser:
            return ["username"]  # the operator's to change: it is what the person signs in with
        return super().get_readonly_fields(request, obj)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        person = self.get_object(request, object_id)
        if person is not None:
            extra_context = {**(extra_context or {}), "read_only_reason": why_not_editable(request.user, person)}
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not request.user.is_superuser:
            # The name and address only: the rest of the row as it is now, not as this page read it.
            save_account(person=obj, by=request.user, values={n: getattr(obj, n) for n in ACCOUNT_FIELDS},
                         request=request)
            return
        super().save_model(request, obj, form, change)
        if change:
            before = {name: form.initial.get(name, "") for name in ACCOUNT_FIELDS}
            record_account_change(person=obj, before=before, by=request.user, request=request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser or can_anywhere(request.user, Capability.MANAGE_CLINIC)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A clinic admin changes the name and address of a colleague who works only in clinics they manage.
        if request.user.is_superuser:
            return super().has_change_permission(request, obj)
        return obj is not None and can_anywhere(request.user, Capability.MANAGE_CLINIC) and may_edit(request.user, obj)

    def _get_obj_does_not_exist_redirect(self, request: HttpRequest, opts: Any, object_id: str) -> Any:
        # Another clinic's person looks exactly like no one: a 404, not Django's redirect to the index.
        raise Http404("Not found")
