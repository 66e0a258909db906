"""Alerts to clinicians, read-only: who was emailed about which adverse event or flagged problem, and when.

A failed alert (no clinician with an address, a refused address, the mail
server down for good) is on the dashboard until someone sends it again.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from clinic.admin_base import ClinicScopedAdmin
from clinic.roles import Capability
from clinic.scoping import can_anywhere
from clinic.words import counted, verb
from patients import staff_alerts
from patients.models import StaffAlert


@admin.register(StaffAlert)
class StaffAlertAdmin(ClinicScopedAdmin):
    change_capability = Capability.LOG_OUTCOMES
    log_views = True  # the rows name patients and what happened to them
    list_display = ["created_at", "kind", "about", "status", "attempts", "recipients", "sent_at", "last_error"]
    list_filter = ["status", "kind"]
    date_hierarchy = "created_at"
    actions = ["send_again_selected"]
    fields = ["clinic", "kind", "about", "status", "created_at", "due_at", "attempts", "emailed", "sent_at",
              "last_error", "lease_until"]
    readonly_fields = fields

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The dashboard's count links to one clinic's undelivered alerts (rows are scoped to the user anyway).
        return lookup == "clinic__id__exact" or super().lookup_allowed(lookup, value, request)

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).select_related(
            "clinic", "adverse_event__treatment__patient", "assessment__treatment__patient"
        )

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_send_again_permission(self, request: HttpRequest) -> bool:
        return can_anywhere(request.user, Capability.LOG_OUTCOMES) or can_anywhere(request.user, Capability.MANAGE_CLINIC)

    @admin.display(description="About")
    def about(self, alert: StaffAlert) -> str:
        if alert.adverse_event_id is not None:
            event = alert.adverse_event
            url = reverse("admin:patients_adverseevent_change", args=[event.pk])
            return format_html('<a href="{}">{}</a> — {}', url, event, event.treatment.patient)
        treatment = alert.assessment.treatment
        url = reverse("admin:patients_treatment_change", args=[treatment.pk]) + "#patient-reports"
        return format_html('<a href="{}">Day {} report</a> — {}', url, alert.assessment.time_point_day,
                           treatment.patient)

    @admin.display(description="Clinicians emailed")
    def recipients(self, alert: StaffAlert) -> int:
        return len(alert.sent_to)

    @admin.display(description="Emailed to")
    def emailed(self, alert: StaffAlert) -> str:
        return ", ".join(alert.sent_to) or "nobody yet"

    @admin.action(description="Send the selected undelivered alerts again", permissions=["send_again"])
    def send_again_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        done = 0
        for alert in queryset:
            try:
                staff_alerts.send_again(alert=alert, by=request.user, request=request)
                done += 1
            except (ValidationError, PermissionDenied) as error:
                self.message_user(request, f"{alert}: {' '.join(getattr(error, 'messages', [str(error)]))}",
                                  messages.WARNING)
        if done:
            self.message_user(request, f"{counted(done, 'alert')} will be sent again to the clinicians who have not "
                                       f"had {verb(done, 'it', 'them')}.")
