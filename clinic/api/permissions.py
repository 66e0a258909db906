"""API permissions: staff of at least one clinic, and the role a view asks for."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from clinic.roles import Capability
from clinic.scoping import can, can_anywhere, clinic_of
from clinic.two_factor import needs_second_factor


class IsClinicStaff(BasePermission):
    """Reads need any role; writes need the view's ``write_capability`` in the row's clinic."""

    message = "You are not a member of a clinic with the role this needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not can_anywhere(request.user, Capability.VIEW):
            return False
        # A browser session counts only once its second factor is verified;
        # tokens are issued only after one (see ObtainTokenView), and one issued
        # before the clinic required it is refused until a device is confirmed (TwoFactorTokenAuthentication).
        if isinstance(request.successful_authenticator, SessionAuthentication) and needs_second_factor(request.user):
            self.message = "Complete two-factor sign-in first."
            return False
        if request.method in SAFE_METHODS:
            return True
        capability = _capability(view)
        return capability is not None and can_anywhere(request.user, capability)

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        clinic = clinic_of(obj)
        if request.method in SAFE_METHODS:
            return can(request.user, Capability.VIEW, clinic)
        capability = _capability(view)
        return capability is not None and clinic is not None and can(request.user, capability, clinic)


def _capability(view: Any) -> Capability | None:
    action = getattr(view, "action", None)
    per_action = getattr(view, "action_capabilities", {})
    if action in per_action:
        return per_action[action]
    return getattr(view, "write_capability", None)
