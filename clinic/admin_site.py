"""The staff interface: Django's admin, branded, with a per-clinic dashboard as its landing page."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from clinic.dashboard import dashboard_for
from clinic.roles import Capability
from clinic.scoping import can_anywhere
from clinic.two_factor import needs_second_factor


class AftercareAdminSite(admin.AdminSite):
    site_header = "Aftercare"
    site_title = "Aftercare"
    index_title = "Today in your clinics"
    index_template = "admin/aftercare_index.html"
    enable_nav_sidebar = True

    def has_permission(self, request: HttpRequest) -> bool:
        """Staff with a role, signed in with the second factor their clinics require.

        Every admin page and every staff view outside the admin (photos,
        timelines, certificates) asks this, so none of them can serve a session
        that has only the password, whatever its path.
        """
        return self.has_staff_role(request) and not needs_second_factor(request.user)

    def has_staff_role(self, request: HttpRequest) -> bool:
        """A role in some clinic (or an operator), second factor or not: enough to sign out."""
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        return user.is_superuser or can_anywhere(user, Capability.VIEW)

    def admin_view(self, view: Callable, cacheable: bool = False) -> Callable:
        if view == self.logout:
            return self._sign_out_view(view)
        model_admin = getattr(view, "__self__", None)
        if isinstance(model_admin, admin.ModelAdmin):
            view = _only_for_viewers(view, model_admin)
        return super().admin_view(view, cacheable)

    def get_urls(self) -> list[Any]:
        from clinic.my_account import my_account  # its form names the user model, not loaded when this module is

        return [path("account/", self.admin_view(my_account), name="my_account"), *super().get_urls()]

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # Password done, code owed: on to the index, which the middleware turns into the code step. Django
        # would show the sign-in form again, saying "not authorized", because has_permission says no.
        if request.method == "GET" and self.has_staff_role(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
        return super().login(request, extra_context)

    def _sign_out_view(self, view: Callable) -> Callable:
        """Sign-out asks for the password only: someone who lost their phone must still be able to leave.

        Django's ``admin_view`` would send a session that owes its second factor
        to the index instead of signing it out.
        """

        @wraps(view)
        def inner(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not self.has_staff_role(request):
                return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
            return view(request, *args, **kwargs)

        return csrf_protect(never_cache(inner))

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {
            "clinic_dashboards": dashboard_for(request.user, now=timezone.now()),
            "shortcuts": shortcuts_for(request.user),
            **(extra_context or {}),
        }
        return super().index(request, extra_context=context)


#: The pages people open most after the numbers, with who may open them.
_SHORTCUTS = (
    ("Review healing", "admin:outcomes_review", Capability.VIEW),
    ("Exports", "admin:patients_export_changelist", Capability.EXPORT),
    ("Access log", "admin:clinic_auditevent_changelist", Capability.VIEW_AUDIT),
)


def shortcuts_for(user: Any) -> list[tuple[str, str]]:
    """(label, url) of the shortcuts this person's roles open."""
    return [(label, reverse(name)) for label, name, capability in _SHORTCUTS if can_anywhere(user, capability)]


def _only_for_viewers(view: Callable, model_admin: admin.ModelAdmin) -> Callable:
    """Refuse (403) every page of a model the person may not see at all, before any row is looked up.

    Django looks the row up first and redirects to the index when it is
    missing, so without this a change or history URL of the operator's tables
    (groups, tokens, schedules, lockouts) would tell staff which ids exist.
    """

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not model_admin.has_view_or_change_permission(request):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return guarded
