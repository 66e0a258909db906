"""Inviting a person to a clinic's staff: their account (new, or the one they have), a membership, and an email.

A clinic admin invites by email address. Nobody with that address yet: a new
account is made (the address is its username, so the person knows what to
sign in with) with no usable password, and the email carries a link to choose
one. Someone already has it: their account keeps its name and password and
only gains the membership; the email says so, and carries the link only if
they never chose a password. The admin learns no more about that account than
its name, which they see on their membership list anyway — not its other
clinics, roles or sign-ins.

The link is a Django password-reset token of our own salt: it expires after
``PASSWORD_RESET_TIMEOUT`` and stops working once a password is set (the
token is derived from the password hash) or the person signs in. Sending a
new link makes the earlier ones invalid, since it sets a new unusable password.

The account and membership are saved in one transaction, with their
access-log entry; the email is sent after the transaction, never inside it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import smtplib
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from clinic.audit import record_event
from clinic.models import Clinic, Membership, Role
from clinic.roles import Capability
from clinic.scoping import can

logger = logging.getLogger(__name__)

_USERNAME_MAX = 150
# What Django's username validator accepts; anything else in an address becomes "_".
_NOT_IN_USERNAME = re.compile(r"[^\w.@+-]")


class InvitationTokenGenerator(PasswordResetTokenGenerator):
    """Password-reset tokens of their own salt: a link from an invitation is good for nothing else."""

    key_salt = "clinic.invitations.InvitationTokenGenerator"


invitation_tokens = InvitationTokenGenerator()


@dataclass(frozen=True)
class Invitation:
    membership: Membership
    #: a new account was made for the address (else an existing one was added to the clinic)
    new_account: bool
    #: the email went out; False when the mail server could not be reached or refused it
    emailed: bool


def invite_staff(
    *,
    clinic: Clinic,
    email: str,
    given_name: str,
    family_name: str,
    role: str,
    invited_by: Any,
    request: HttpRequest | None = None,
) -> Invitation:
    """Give the person with ``email`` the ``role`` at ``clinic`` and email them; see the module's docstring.

    PermissionDenied unless ``invited_by`` manages ``clinic``; ValidationError
    (by field) for an address already on the clinic's staff or one that cannot
    be invited, with nothing saved and nothing sent. Call it outside a
    transaction: the email is sent once the membership is committed.
    """
    if not can(invited_by, Capability.MANAGE_CLINIC, clinic):
        raise PermissionDenied("Only a clinic admin of this clinic may invite its staff.")
    if role not in Role.values:
        raise ValidationError({"role": f"{role!r} is not a role."})
    email = BaseUserManager.normalize_email(email.strip())
    try:
        with transaction.atomic():
            user, new_account = _account_for(email=email, given_name=given_name.strip(), family_name=family_name.strip())
            membership, rejoined = _join(user=user, clinic=clinic, role=role)
            if not new_account and not user.has_usable_password():
                _invalidate_earlier_links(user)  # only the link of this email works
            record_event(
                actor=invited_by, action="staff.invited", clinic=clinic, obj=membership, request=request,
                detail={"person": user.get_username(), "user": user.pk, "role": role,
                        "account": "new" if new_account else "existing", "membership": "reactivated" if rejoined else "new"},
            )
    except IntegrityError:
        # Another admin invited the same address at the same moment: theirs won, and the unique
        # username or membership refused ours. Nothing of this attempt was saved.
        raise ValidationError({"email": f"{email} was invited by someone else just now. Reload the staff list."}) from None
    emailed = send_invitation(membership=membership, invited_by=invited_by)
    return Invitation(membership=membership, new_account=new_account, emailed=emailed)


def resend_invitation(*, membership: Membership, sent_by: Any, request: HttpRequest | None = None) -> bool:
    """Email a new link to someone who has not chosen a password yet; earlier links stop working.

    PermissionDenied unless ``sent_by`` manages the membership's clinic;
    ValidationError when there is nothing to resend. Returns whether the email went out.
    """
    if not can(sent_by, Capability.MANAGE_CLINIC, membership.clinic_id):
        raise PermissionDenied("Only a clinic admin of this clinic may invite its staff.")
    if not awaits_password(membership):
        raise ValidationError(f"{membership.user} has chosen a password already, or no longer works here; "
                              "there is no invitation to send again.")
    with transaction.atomic():
        _invalidate_earlier_links(membership.user)
        record_event(actor=sent_by, action="staff.invitation_resent", clinic=membership.clinic, obj=membership,
                     detail={"person": membership.user.get_username(), "user": membership.user_id}, request=request)
    return send_invitation(membership=membership, invited_by=sent_by)


def awaits_password(membership: Membership) -> bool:
    """An active member whose account has never had a password: their invitation can be sent again."""
    user = membership.user
    return membership.is_active and user.is_active and not user.has_usable_password()


def set_password_url(user: Any) -> str:
    """The absolute "choose your password" link for ``user``, valid until it is used or expires."""
    path = reverse("staff_set_password", kwargs={
        "uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": invitation_tokens.make_token(user),
    })
    return settings.SITE_URL + path


def send_invitation(*, membership: Membership, invited_by: Any) -> bool:
    """Email the member that they were added to the clinic (with a link to choose a password if they need one).

    Returns False, logging why, when the mail server could not be reached or
    refused the message: the membership stands and the email can be sent again.
    """
    message = build_invitation_email(membership=membership, invited_by=invited_by)
    try:
        message.send(fail_silently=False)
    except (smtplib.SMTPException, OSError):
        logger.exception("Could not email the invitation of membership %s", membership.pk)
        return False
    return True


def build_invitation_email(*, membership: Membership, invited_by: Any) -> EmailMultiAlternatives:
    """The invitation: text and HTML, from our address, replies to the clinic; no health data in it."""
    user, clinic = membership.user, membership.clinic
    needs_password = not user.has_usable_password()
    context = {
        "clinic": clinic,
        "user": user,
        "username": user.get_username(),
        "role": membership.get_role_display(),
        "invited_by": invited_by.get_full_name() or invited_by.get_username(),
        "set_password_url": set_password_url(user) if needs_password else "",
        "expires_at": timezone.now() + dt.timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT),
        "sign_in_url": settings.SITE_URL + reverse("admin:login"),
        "two_factor": clinic.require_two_factor,
    }
    subject = f"{clinic.name}: you are invited to Aftercare" if needs_password else f"{clinic.name} added you in Aftercare"
    with timezone.override(ZoneInfo(clinic.time_zone)):  # the expiry on the clock of the clinic they join
        text = render_to_string("emails/staff_invitation.txt", context)
        html = render_to_string("emails/staff_invitation.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=[user.email], reply_to=[clinic.contact_email])
    message.attach_alternative(html, "text/html")
    return message


# --- the steps -----------------------------------------------------------------------------------------


def _account_for(*, email: str, given_name: str, family_name: str) -> tuple[Any, bool]:
    """The account that has ``email`` (any case), or a new one; and whether it is new."""
    User = get_user_model()  # noqa: N806
    found = list(User.objects.select_for_update().filter(email__iexact=email)[:2])
    if len(found) > 1:
        raise ValidationError({"email": "Several accounts use this address, so it cannot be invited. "
                                        "Ask the operator of Aftercare to sort it out."})
    if found:
        user = found[0]
        if not user.is_active:
            raise ValidationError({"email": "The account with this address is switched off. "
                                            "Ask the operator of Aftercare to switch it on before inviting it."})
        if not user.is_staff:
            # A role in a clinic means signing in to the staff pages, which Django's admin allows only to staff.
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        return user, False
    if not given_name or not family_name:
        raise ValidationError({"given_name" if not given_name else "family_name": "Give the person's name."})
    user = User(username=_free_username(email), email=email, first_name=given_name, last_name=family_name,
                is_staff=True, is_superuser=False, is_active=True)
    user.set_unusable_password()
    user.save()
    return user, True


def _free_username(email: str) -> str:
    """The address as a username (what the person signs in with), numbered when someone else already has it."""
    User = get_user_model()  # noqa: N806
    base = _NOT_IN_USERNAME.sub("_", email.lower())[:_USERNAME_MAX]
    candidate, number = base, 2
    while User.objects.filter(username__iexact=candidate).exists():
        suffix = f"-{number}"
        candidate, number = base[:_USERNAME_MAX - len(suffix)] + suffix, number + 1
    return candidate


def _join(*, user: Any, clinic: Clinic, role: str) -> tuple[Membership, bool]:
    """A new active membership of ``user`` at ``clinic``, or their former one reactivated; and whether it was former."""
    membership = Membership.objects.select_for_update().filter(user=user, clinic=clinic).order_by("pk").first()
    if membership is None:
        return Membership.objects.create(user=user, clinic=clinic, role=role, is_active=True), False
    if membership.is_active:
        raise ValidationError({"email": f"{user.email} is already on the staff of {clinic} "
                                        f"({membership.get_role_display()}). Change their role on the clinic's page."})
    membership.role, membership.is_active = role, True
    membership.save(update_fields=["role", "is_active"])
    return membership, True


def _invalidate_earlier_links(user: Any) -> None:
    # A token is derived from the password hash: a new unusable one (random) voids every link sent before.
    user.set_unusable_password()
    user.save(update_fields=["password"])
