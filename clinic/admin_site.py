"""The staff interface: Django's admin, branded, with a per-clinic dashboard as its landing page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from clinic.dashboard import dashboard_for
from clinic.roles import Capability
from clinic.scoping import can_anywhere


class AftercareAdminSite(admin.AdminSite):
    site_header = "Aftercare"
    site_title = "Aftercare"
    index_title = "Today in your clinics"
    index_template = "admin/aftercare_index.html"
    enable_nav_sidebar = True

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        return user.is_superuser or can_anywhere(user, Capability.VIEW)

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {"clinic_dashboards": dashboard_for(request.user, now=timezone.now()), **(extra_context or {})}
        return super().index(request, extra_context=context)
