"""Inviting a person to a clinic's staff: their account (new, or the one they have), a membership, and an email.

A clinic admin invites by email address. Nobody with that address yet: a new
account is made (the address is its username, so the person knows what to
sign in with) with no usable password, and the email carries a link to choose
one. Someone already has it: their account keeps its name and password and
only gains the membership; the email says so, and carries the link only if
they never chose a password.

The inviting admin is told the same whatever exists — whether the address
has an account, whether it is switched off or not staff — except that
someone already on their own clinic's staff is refused (they see that list).
An account switched off, or one the operator took staff status from, still
gets the membership but keeps its state, and is not emailed: the membership
works once the operator switches it back on. An address several accounts
share cannot be given to one of them safely; it is refused with the message
a clash with another invitation gets. The operator reads why in the access
log's entries of no clinic (``staff.invited_existing_account``,
``staff.invitation_refused``), which the clinic's admins do not see.

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
from clinic.senders import clinic_sender

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
    #: the address as the admin gave it (normalised), which is what they are told about
    address: str
    #: a new account was made for the address (else an existing one was added to the clinic)
    new_account: bool
    #: the email went out; False too when none was due (the account is switched off or not staff)
    emailed: bool
    #: an email was due, but the mail server could not be reached or refused it
    email_failed: bool


class _AddressShared(Exception):
    """Several accounts have the address: none of them can be told apart as the person invited."""


def cannot_invite_message(email: str) -> str:
    """The refusal for a clash with another invitation and for an address several accounts share, alike."""
    return (f"{email} could not be invited just now. Reload the staff list and try again; "
            "if it is refused again, ask the operator of Aftercare.")


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
    given_name, family_name = given_name.strip(), family_name.strip()
    if not given_name or not family_name:
        # Asked of every invitation, so that asking does not tell whether the address has an account.
        raise ValidationError({"given_name" if not given_name else "family_name": "Give the person's name."})
    email = BaseUserManager.normalize_email(email.strip())
    try:
        with transaction.atomic():
            user, new_account = _account_for(email=email, given_name=given_name, family_name=family_name)
            membership, rejoined = _join(user=user, clinic=clinic, role=role)
            if not new_account and not user.has_usable_password():
                _invalidate_earlier_links(user)  # only the link of this email works
            # What the clinic's log says is the same for a new account and an existing one.
            record_event(
                actor=invited_by, action="staff.invited", clinic=clinic, obj=membership, request=request,
                detail={"person": user.get_username(), "user": user.pk, "role": role,
                        "membership": "reactivated" if rejoined else "new"},
            )
            if not new_account:
                _record_existing_account(user=user, membership=membership, invited_by=invited_by, request=request)
    except _AddressShared:
        logger.warning("Invitation to clinic %s refused: several accounts use the address", clinic.pk)
        record_event(actor=invited_by, action="staff.invitation_refused", request=request,
                     detail={"clinic": clinic.pk, "address": email, "reason": "several accounts use this address"})
        raise ValidationError({"email": cannot_invite_message(email)}) from None
    except IntegrityError:
        # Another admin invited the same address at the same moment: theirs won, and the unique
        # username or membership refused ours. Nothing of this attempt was saved.
        raise ValidationError({"email": cannot_invite_message(email)}) from None
    if not can_sign_in(user):
        return Invitation(membership=membership, address=email, new_account=new_account, emailed=False,
                          email_failed=False)
    emailed = send_invitation(membership=membership, invited_by=invited_by)
    return Invitation(membership=membership, address=email, new_account=new_account, emailed=emailed,
                      email_failed=not emailed)


def can_sign_in(user: Any) -> bool:
    """Whether the account may sign in to the staff pages (Django's admin lets in active staff only)."""
    return user.is_active and user.is_staff


def _record_existing_account(*, user: Any, membership: Membership, invited_by: Any, request: HttpRequest | None) -> None:
    # An entry of no clinic: the operator reads it, the inviting clinic's admins do not.
    if not user.is_active:
        state = "switched off: the membership works once the operator switches the account on; not emailed"
    elif not user.is_staff:
        state = "not staff: the membership works once the operator gives the account staff status; not emailed"
    else:
        state = "usable"
    record_event(actor=invited_by, action="staff.invited_existing_account", obj=membership, request=request,
                 detail={"clinic": membership.clinic_id, "user": user.pk, "account": state})


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
    message = EmailMultiAlternatives(subject=subject, body=text, from_email=clinic_sender(clinic), to=[user.email],
                                     reply_to=[clinic.contact_email])
    message.attach_alternative(html, "text/html")
    return message


# --- the steps -----------------------------------------------------------------------------------------


def _account_for(*, email: str, given_name: str, family_name: str) -> tuple[Any, bool]:
    """The account that has ``email`` (any case), or a new one; and whether it is new."""
    User = get_user_model()  # noqa: N806
    found = list(User.objects.select_for_update().filter(email__iexact=email)[:2])
    if len(found) > 1:
        raise _AddressShared()
    if found:
        # Kept as it is, switched off or not staff included: those are the operator's to change, not a clinic's.
        return found[0], False
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
    if membership.is_active and awaits_password(membership):
        raise ValidationError({"email": f"{user.email} was invited to {clinic} ({membership.get_role_display()}) and "
                                        "has not chosen a password yet. To email the link again, tick them on the "
                                        "staff list and choose \"Send the invitation again\"."})
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
