"""Two-factor sign-in for staff (TOTP through django-otp).

A person must use a one-time-password device when they are an operator
(superuser) or a member of any clinic that requires it.  After the password,
they are sent to enrol a device (first time) or to enter a code; no staff
page (the admin and the ``/staff/`` files: photos, timelines, certificates),
and no API call made with the session, works until they have.  The admin
site's ``has_permission`` refuses such a session too, so a staff view that
checks it is closed even outside these paths.  An API token is refused while its
holder needs a second factor and has no confirmed device (a token issued before
their clinic switched the rule on; ``clinic.api.authentication``).
"""

from __future__ import annotations

from base64 import b32encode
from collections.abc import Callable
from typing import Any

import qrcode
import qrcode.image.svg
from django import forms
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django_otp import login as otp_login
from django_otp import match_token
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.audit import record_event
from clinic.models import Clinic, Membership


def requires_two_factor(user: Any) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    # Asked several times per request (middleware, admin site, API): read once per user object, as scoping does.
    if "_aftercare_requires_two_factor" not in user.__dict__:
        user.__dict__["_aftercare_requires_two_factor"] = Membership.objects.filter(
            user=user, is_active=True, clinic__require_two_factor=True
        ).exists()
    return user.__dict__["_aftercare_requires_two_factor"]


def is_verified(user: Any) -> bool:
    return bool(getattr(user, "is_verified", lambda: False)())


def needs_second_factor(user: Any) -> bool:
    return not is_verified(user) and requires_two_factor(user)


def confirmed_device(user: Any) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def api_tokens_stopped(clinic: Clinic) -> int:
    """How many of ``clinic``'s active members hold an API token that stops working now it requires two-factor.

    Those with a confirmed device keep theirs working.  Operators and members of
    another clinic that requires it are not counted: their tokens were refused
    before the switch already.
    """
    device = TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
    elsewhere = Membership.objects.filter(user=OuterRef("pk"), is_active=True, clinic__require_two_factor=True).exclude(
        clinic=clinic
    )
    return (
        get_user_model().objects.filter(
            is_active=True, is_superuser=False, auth_token__isnull=False,
            memberships__clinic=clinic, memberships__is_active=True,
        )
        .exclude(Exists(device)).exclude(Exists(elsewhere)).distinct().count()
    )


def record_rule_change(*, clinic: Clinic, by: Any, request: HttpRequest | None = None) -> int:
    """``clinic.require_two_factor`` was just changed and saved: log it; return how many API tokens stopped working."""
    stopped = api_tokens_stopped(clinic) if clinic.require_two_factor else 0
    detail: dict[str, Any] = {"require_two_factor": clinic.require_two_factor}
    if clinic.require_two_factor:
        detail["api_tokens_stopped"] = stopped
    record_event(actor=by, action="clinic.two_factor_changed", clinic=clinic, obj=clinic, detail=detail, request=request)
    return stopped


def pending_device(user: Any) -> TOTPDevice:
    """The unconfirmed device being enrolled, created on first visit."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def qr_svg(device: TOTPDevice) -> str:
    """The device's otpauth:// URL as an inline SVG QR code (issuer from OTP_TOTP_ISSUER)."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string(encoding="unicode")


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Six-digit code from your authenticator app", min_length=6, max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


#: Every path that serves staff only: the admin, and the files its pages link to (photos, timelines, certificates).
STAFF_PATHS = ("/admin/", "/staff/")

#: The steps of signing in and out, open to a session that still owes its second factor.
EXEMPT_PATHS = ("/admin/login/", "/admin/logout/", "/admin/two-factor/", "/admin/jsi18n/")


def _next_url(request: HttpRequest) -> str:
    # Back to the staff page or file that asked for the code; never anywhere off the site.
    target = request.GET.get("next") or request.POST.get("next") or ""
    return target if target.startswith(STAFF_PATHS) else reverse("admin:index")


@staff_member_required
def setup(request: HttpRequest) -> HttpResponse:
    if confirmed_device(request.user):
        return HttpResponseRedirect(reverse("two_factor_verify"))
    device = pending_device(request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["code"].strip()):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            return HttpResponseRedirect(_next_url(request))
        form.add_error("code", "That code is not right. Check the time on your phone and try the newest code.")
    context = {
        "title": "Set up two-factor sign-in",
        "form": form,
        # Not escaped on purpose (nosec): a path-only SVG that qrcode draws from our own otpauth://
        # URL; it carries no user-typed text.
        "qr": mark_safe(qr_svg(device)),  # noqa: S308  # nosec B308, B703
        "secret": b32encode(device.bin_key).decode(),
        "next": _next_url(request),
    }
    return render(request, "admin/two_factor/setup.html", context)


@staff_member_required
def verify(request: HttpRequest) -> HttpResponse:
    if not confirmed_device(request.user):
        return HttpResponseRedirect(reverse("two_factor_setup"))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = match_token(request.user, form.cleaned_data["code"].strip())
        if device is not None:
            otp_login(request, device)
            return HttpResponseRedirect(_next_url(request))
        form.add_error("code", "That code is not right. Try the newest code from your authenticator app.")
    return render(request, "admin/two_factor/verify.html", {"title": "Two-factor sign-in", "form": form,
                                                             "next": _next_url(request)})


class TwoFactorMiddleware:
    """Send staff who still owe a second factor to enrol or verify before any staff page or file."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if path.startswith(STAFF_PATHS) and not path.startswith(EXEMPT_PATHS) and needs_second_factor(request.user):
            target = "two_factor_verify" if confirmed_device(request.user) else "two_factor_setup"
            return HttpResponseRedirect(f"{reverse(target)}?next={path}")
        return self.get_response(request)
