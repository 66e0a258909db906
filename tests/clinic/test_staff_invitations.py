"""A clinic admin invites a new staff member: an account, a membership, and a one-time link to choose a password."""

from __future__ import annotations

import datetime as dt
import re
import smtplib
from unittest import mock

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.invitations import cannot_invite_message, invite_staff
from clinic.models import AuditEvent, Clinic, Membership, Role
from tests.factories import PASSWORD, ClinicFactory, MembershipFactory, staff
from tests.security.matrix import signed_in

pytestmark = pytest.mark.django_db

User = get_user_model()
INVITE = "/admin/clinic/membership/invite/"
NEW_PASSWORD = "lilac-harbour-kettle-42"


def invite(client, clinic: Clinic, **overrides: str):
    data = {"clinic": clinic.pk, "given_name": "Nora", "family_name": "Quinn", "email": "Nora.Quinn@Example.org",
            "role": Role.CLINICIAN, **overrides}
    return client.post(INVITE, data)


def link_in(message) -> str:
    found = re.search(r"http://[^\s\"<]+/admin/set-password/[^\s\"<]+/", message.body)
    assert found, message.body
    return found.group(0).removeprefix(settings.SITE_URL)


def open_link(client, link: str):
    """Follow the emailed link: the token moves into the session and the form is at a URL without it."""
    response = client.get(link)
    assert response.status_code == 302, response.content.decode()
    assert response["Location"].endswith("/set-password/")
    return response["Location"]


def sign_in(client, username: str, password: str):
    return client.post("/admin/login/", {"username": username, "password": password})


@pytest.fixture
def admin_client(client, clinic_admin):
    client.force_login(clinic_admin)
    return client


@pytest.fixture
def newcomer() -> Client:
    """The invited person's browser."""
    return Client()


def test_it_invites_a_new_person_who_chooses_a_password_and_signs_in(admin_client, clinic_admin, clinic_a, newcomer):
    page = admin_client.get(INVITE)
    assert page.status_code == 200
    assert re.search(rf'<option value="{clinic_a.pk}" selected>', page.content.decode())  # their only clinic

    response = invite(admin_client, clinic_a)

    assert response.status_code == 302
    user = User.objects.get(email__iexact="nora.quinn@example.org")
    assert user.username == "nora.quinn@example.org"
    assert (user.first_name, user.last_name) == ("Nora", "Quinn")
    assert user.is_staff and user.is_active and not user.is_superuser
    assert not user.has_usable_password()
    membership = Membership.objects.get(user=user)
    assert (membership.clinic, membership.role, membership.is_active) == (clinic_a, Role.CLINICIAN, True)
    assert membership.history.get().history_user == clinic_admin
    shown = admin_client.get(response["Location"]).content.decode()
    assert "Invitation sent to Nora.Quinn@example.org as clinician at Harbour Skin Clinic." in shown

    [message] = mail.outbox
    assert message.to == ["Nora.Quinn@example.org"]
    assert message.reply_to == [clinic_a.contact_email]
    assert "Harbour Skin Clinic" in message.subject
    html = message.alternatives[0][0]
    link = link_in(message)
    assert link in html
    assert "nora.quinn@example.org" in message.body and "clinician" in message.body
    assert "authenticator" not in message.body  # the clinic does not require a second factor

    form_url = open_link(newcomer, link)
    form = newcomer.get(form_url)
    assert form.status_code == 200
    assert "nora.quinn@example.org" in form.content.decode()
    done = newcomer.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/admin/login/"
    assert "Sign in with your username, nora.quinn@example.org" in newcomer.get("/admin/login/").content.decode()

    assert sign_in(newcomer, "nora.quinn@example.org", NEW_PASSWORD).status_code == 302
    index = newcomer.get("/admin/")
    assert index.status_code == 200
    assert "Harbour Skin Clinic" in index.content.decode()


def test_the_password_must_pass_the_projects_validators(admin_client, clinic_a, newcomer):
    invite(admin_client, clinic_a)
    form_url = open_link(newcomer, link_in(mail.outbox[0]))

    response = newcomer.post(form_url, {"new_password1": "short1", "new_password2": "short1"})

    assert response.status_code == 200
    assert "at least 12 characters" in response.content.decode()
    assert not User.objects.get(username="nora.quinn@example.org").has_usable_password()


def test_the_link_works_once(admin_client, clinic_a, newcomer):
    invite(admin_client, clinic_a)
    link = link_in(mail.outbox[0])
    form_url = open_link(newcomer, link)
    newcomer.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    again = newcomer.get(link)

    assert again.status_code == 200
    assert "This link has expired, has been used already" in again.content.decode()
    assert newcomer.post(form_url, {"new_password1": "another-long-pass-77", "new_password2": "another-long-pass-77"}
                       ).status_code == 200
    assert User.objects.get(username="nora.quinn@example.org").check_password(NEW_PASSWORD)


def test_the_link_expires_after_password_reset_timeout(admin_client, clinic_a, newcomer):
    assert settings.PASSWORD_RESET_TIMEOUT == 3 * 24 * 3600
    invite(admin_client, clinic_a)
    link = link_in(mail.outbox[0])
    assert "expires on" in mail.outbox[0].body

    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=3, minutes=1)):
        response = newcomer.get(link)

    assert response.status_code == 200
    assert "This link has expired" in response.content.decode()
    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=2, hours=23)):
        assert newcomer.get(link).status_code == 302


def test_a_wrong_link_says_the_same_whether_or_not_the_account_exists(admin_client, clinic_a, clinician, newcomer):
    invite(admin_client, clinic_a)
    link = link_in(mail.outbox[0])
    uid, token = link.rstrip("/").split("/")[-2:]
    pages = [
        newcomer.get(f"/admin/set-password/{uid}/{token[:-1]}x/"),  # the invited account, a forged token
        newcomer.get(f"/admin/set-password/MTIzNDU2Nzg/{token}/"),  # no such account
        newcomer.get(f"/admin/set-password/{uid}/set-password/"),  # no token in the session
    ]
    assert {page.status_code for page in pages} == {200}
    assert len({page.content.decode().replace(page.wsgi_request.path, "") for page in pages}) == 1


def test_an_existing_account_is_added_and_keeps_its_name_and_password(admin_client, clinic_a, clinic_b, newcomer):
    person = staff(Role.AUDITOR, clinic_b, username="pat", email="pat@elsewhere.example", first_name="Pat",
                   last_name="Reyes")

    response = invite(admin_client, clinic_a, email="PAT@Elsewhere.example", given_name="Patricia", family_name="X")

    assert response.status_code == 302
    person.refresh_from_db()
    assert (person.username, person.first_name, person.last_name) == ("pat", "Pat", "Reyes")
    assert person.check_password(PASSWORD)
    assert User.objects.filter(email__iexact="pat@elsewhere.example").count() == 1
    membership = Membership.objects.get(user=person, clinic=clinic_a)
    assert (membership.role, membership.is_active) == (Role.CLINICIAN, True)
    shown = admin_client.get(response["Location"]).content.decode()
    # Word for word what a new address gets: nothing of the account, nor of its other clinic.
    assert "Invitation sent to PAT@elsewhere.example as clinician at Harbour Skin Clinic." in shown
    assert "already had" not in shown and clinic_b.name not in shown
    [message] = mail.outbox
    assert "/admin/set-password/" not in message.body  # they have a password: no link to replace it
    assert "/admin/login/" in message.body and "(pat)" in message.body
    assert clinic_b.name not in message.body
    assert sign_in(newcomer, "pat", PASSWORD).status_code == 302


def test_a_former_member_is_taken_back_with_the_new_role(admin_client, clinic_admin, clinic_a):
    former = MembershipFactory(clinic=clinic_a, role=Role.AUDITOR, is_active=False)

    invite(admin_client, clinic_a, email=former.user.email, role=Role.COORDINATOR)

    former.refresh_from_db()
    assert (former.role, former.is_active) == (Role.COORDINATOR, True)
    assert former.history.first().history_user == clinic_admin
    event = AuditEvent.objects.get(action="staff.invited")
    assert event.detail["membership"] == "reactivated"


def test_it_refuses_someone_already_on_the_staff(admin_client, clinic_a, clinician):
    events = AuditEvent.objects.count()

    response = invite(admin_client, clinic_a, email=clinician.email.upper())

    assert response.status_code == 400
    assert "is already on the staff of Harbour Skin Clinic" in response.content.decode()
    assert Membership.objects.filter(user=clinician).count() == 1
    assert not mail.outbox
    assert AuditEvent.objects.count() == events


def test_it_refuses_a_clinic_the_admin_does_not_manage(admin_client, clinic_a, clinic_b):
    staff(Role.CLINICIAN, clinic_b, username="someone_b")  # B exists and has staff; A's admin may not add to it

    response = invite(admin_client, clinic_b)

    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert clinic_b.name not in admin_client.get(INVITE).content.decode()
    assert not User.objects.filter(email__iexact="nora.quinn@example.org").exists()
    assert not Membership.objects.filter(clinic=clinic_b).exclude(user__username="someone_b").exists()
    assert not mail.outbox


def test_it_refuses_a_clinic_it_manages_not_in_a_clinic_it_only_works_in(client, clinic_a, clinic_b):
    person = staff(Role.CLINIC_ADMIN, clinic_a, username="admin_of_a")
    MembershipFactory(user=person, clinic=clinic_b, role=Role.CLINICIAN)
    client.force_login(person)

    assert invite(client, clinic_b).status_code == 400
    assert not mail.outbox


@pytest.mark.parametrize("email", ["", "not-an-address", "nora@", "a" * 250 + "@x.org"])
def test_it_refuses_a_bad_address(admin_client, clinic_a, email):
    users = User.objects.count()

    response = invite(admin_client, clinic_a, email=email)

    assert response.status_code == 400
    assert 'class="errorlist' in response.content.decode()
    assert User.objects.count() == users
    assert not mail.outbox


def test_it_asks_for_the_name(admin_client, clinic_a):
    assert invite(admin_client, clinic_a, given_name=" ").status_code == 400
    assert not User.objects.filter(email__iexact="nora.quinn@example.org").exists()


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.COORDINATOR, Role.AUDITOR])
def test_it_is_only_for_clinic_admins(client, clinic_a, role):
    client.force_login(staff(role, clinic_a, username=f"{role}_a"))

    assert client.get(INVITE).status_code == 403
    assert invite(client, clinic_a).status_code == 403
    assert not User.objects.filter(email__iexact="nora.quinn@example.org").exists()
    assert not mail.outbox
    assert "Invite a staff member" not in client.get("/admin/clinic/membership/").content.decode()


def test_it_writes_the_access_log_without_the_link(admin_client, clinic_admin, clinic_a):
    invite(admin_client, clinic_a, role=Role.CLINIC_ADMIN)

    event = AuditEvent.objects.get(action="staff.invited")
    user = User.objects.get(username="nora.quinn@example.org")
    membership = Membership.objects.get(user=user)
    assert (event.actor, event.clinic, event.object_type, event.object_id) == (
        clinic_admin, clinic_a, "clinic.membership", str(membership.pk))
    assert event.detail == {"person": "nora.quinn@example.org", "user": user.pk, "role": "clinic_admin",
                            "membership": "new"}
    token = link_in(mail.outbox[0]).rstrip("/").rsplit("/", 1)[-1]
    assert token not in str(AuditEvent.objects.values_list("detail", flat=True).get(pk=event.pk))


def test_choosing_the_password_is_logged(admin_client, clinic_a, newcomer):
    invite(admin_client, clinic_a)
    form_url = open_link(newcomer, link_in(mail.outbox[0]))

    newcomer.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    event = AuditEvent.objects.get(action="staff.password_set")
    assert event.actor.username == "nora.quinn@example.org"
    assert event.clinic == clinic_a
    log = admin_client.get("/admin/clinic/auditevent/").content.decode()
    assert "staff.password_set" in log and "staff.invited" in log


def test_two_factor_setup_follows_for_a_clinic_that_requires_it(newcomer):
    strict = ClinicFactory(name="Strict Clinic", slug="strict", require_two_factor=True)
    boss = staff(Role.CLINIC_ADMIN, strict, username="boss")
    TOTPDevice.objects.create(user=boss, name="phone", confirmed=True)
    invite(signed_in(boss), strict)
    assert "authenticator app" in mail.outbox[0].body

    form_url = open_link(newcomer, link_in(mail.outbox[0]))
    newcomer.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    sign_in(newcomer, "nora.quinn@example.org", NEW_PASSWORD)

    response = newcomer.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/two-factor/setup/")


def test_the_invitation_can_be_sent_again_and_only_the_newest_link_works(admin_client, clinic_a, clinician, newcomer):
    invite(admin_client, clinic_a)
    first = link_in(mail.outbox[0])
    membership = Membership.objects.get(user__username="nora.quinn@example.org")
    others = Membership.objects.get(user=clinician)  # has a password: nothing to resend

    response = admin_client.post("/admin/clinic/membership/", {
        "action": "resend_invitations", "_selected_action": [membership.pk, others.pk], "index": 0,
    })

    assert response.status_code == 302
    assert len(mail.outbox) == 2
    assert mail.outbox[1].to == ["Nora.Quinn@example.org"]
    assert AuditEvent.objects.filter(action="staff.invitation_resent", object_id=str(membership.pk)).count() == 1
    assert "This link has expired" in newcomer.get(first).content.decode()
    assert newcomer.get(link_in(mail.outbox[1])).status_code == 302


def test_a_mail_server_failure_keeps_the_invitation_and_says_so(admin_client, clinic_a):
    with mock.patch("django.core.mail.EmailMultiAlternatives.send", side_effect=smtplib.SMTPServerDisconnected("gone")):
        response = invite(admin_client, clinic_a)

    assert Membership.objects.filter(user__username="nora.quinn@example.org", is_active=True).exists()
    shown = admin_client.get(response["Location"]).content.decode()
    assert "The email could not be sent" in shown


def test_the_clinic_page_and_the_staff_list_offer_the_invitation(admin_client, clinic_a):
    clinic_page = admin_client.get(f"/admin/clinic/clinic/{clinic_a.pk}/change/").content.decode()
    assert f'href="{INVITE}?clinic={clinic_a.pk}"' in clinic_page
    assert f'href="{INVITE}"' in admin_client.get("/admin/clinic/membership/").content.decode()
    assert "invite them" in admin_client.get("/admin/clinic/membership/add/").content.decode()


def test_an_account_that_never_chose_a_password_gets_a_new_link_and_the_old_one_stops(
    admin_client, clinic_a, clinic_b, newcomer
):
    admin_b = staff(Role.CLINIC_ADMIN, clinic_b, username="admin_b")
    invite_staff(clinic=clinic_b, email="nora.quinn@example.org", given_name="Nora", family_name="Quinn",
                 role=Role.AUDITOR, invited_by=admin_b)
    from_b = link_in(mail.outbox[0])

    invite(admin_client, clinic_a, given_name="Someone", family_name="Else")

    assert Membership.objects.filter(user__username="nora.quinn@example.org", is_active=True).count() == 2
    assert User.objects.get(username="nora.quinn@example.org").first_name == "Nora"
    from_a = link_in(mail.outbox[1])
    assert "This link has expired" in newcomer.get(from_b).content.decode()
    assert newcomer.get(from_a).status_code == 302


# --- what the inviting admin learns of an address that has an account elsewhere -----------------------


def _told(admin_client, clinic, email: str) -> tuple[int, str]:
    response = invite(admin_client, clinic, email=email)
    if response.status_code == 302:
        shown = admin_client.get(response["Location"])
        return 302, " ".join(str(message) for message in shown.context["messages"])
    return response.status_code, response.context["form"].errors.as_text()


def test_the_admin_is_told_the_same_whatever_the_address_has(admin_client, clinic_a, clinic_b):
    staff(Role.AUDITOR, clinic_b, username="pat", email="pat@elsewhere.example")
    switched_off = staff(Role.AUDITOR, clinic_b, username="sam", email="sam@elsewhere.example")
    switched_off.is_active = False
    switched_off.save()
    not_staff = staff(Role.AUDITOR, clinic_b, username="kim", email="kim@elsewhere.example")
    not_staff.is_staff = False
    not_staff.save()

    told = {email: _told(admin_client, clinic_a, email) for email in
            ("new@elsewhere.example", "pat@elsewhere.example", "sam@elsewhere.example", "kim@elsewhere.example")}

    said = {(status, text.replace(email, "<address>")) for email, (status, text) in told.items()}
    assert said == {(302, "Invitation sent to <address> as clinician at Harbour Skin Clinic.")}
    assert Membership.objects.filter(clinic=clinic_a, is_active=True, role=Role.CLINICIAN).count() == 4


def test_an_account_switched_off_or_not_staff_keeps_its_state_is_not_emailed_and_the_operator_is_told(
    admin_client, clinic_admin, clinic_a, clinic_b
):
    switched_off = staff(Role.AUDITOR, clinic_b, username="sam", email="sam@elsewhere.example")
    not_staff = staff(Role.AUDITOR, clinic_b, username="kim", email="kim@elsewhere.example")
    User.objects.filter(pk=switched_off.pk).update(is_active=False)
    User.objects.filter(pk=not_staff.pk).update(is_staff=False)

    invite(admin_client, clinic_a, email="sam@elsewhere.example")
    invite(admin_client, clinic_a, email="kim@elsewhere.example")

    switched_off.refresh_from_db()
    not_staff.refresh_from_db()
    assert not switched_off.is_active and switched_off.is_staff
    assert not_staff.is_active and not not_staff.is_staff  # the operator took it away: an invitation does not undo that
    assert not mail.outbox
    notes = {e.detail["user"]: e for e in AuditEvent.objects.filter(action="staff.invited_existing_account")}
    assert notes[switched_off.pk].clinic is None  # the operator's: not in clinic A's log
    assert "switched off" in notes[switched_off.pk].detail["account"]
    assert "once the operator gives the account staff status" in notes[not_staff.pk].detail["account"]
    assert all("account" not in e.detail for e in AuditEvent.objects.filter(action="staff.invited"))


def test_an_address_several_accounts_share_is_refused_as_a_clash_is_and_the_operator_is_told(
    admin_client, clinic_a, clinic_b
):
    staff(Role.AUDITOR, clinic_b, username="twin1", email="twin@elsewhere.example")
    staff(Role.AUDITOR, clinic_b, username="twin2", email="TWIN@elsewhere.example")

    status, text = _told(admin_client, clinic_a, "twin@elsewhere.example")

    assert status == 400
    assert text == f"* email\n  * {cannot_invite_message('twin@elsewhere.example')}"
    assert "Several accounts" not in text
    assert not Membership.objects.filter(clinic=clinic_a, user__email__iexact="twin@elsewhere.example").exists()
    refused = AuditEvent.objects.get(action="staff.invitation_refused")
    assert refused.clinic is None
    assert refused.detail == {"clinic": clinic_a.pk, "address": "twin@elsewhere.example",
                              "reason": "several accounts use this address"}
    assert not mail.outbox


def test_a_clash_with_another_invitation_gets_the_same_refusal(admin_client, clinic_a):
    from django.db import IntegrityError

    with mock.patch("clinic.invitations._join", side_effect=IntegrityError("unique")):
        status, text = _told(admin_client, clinic_a, "nora@example.org")

    assert (status, text) == (400, f"* email\n  * {cannot_invite_message('nora@example.org')}")


def test_inviting_again_someone_who_has_not_chosen_a_password_points_to_sending_the_link_again(
    admin_client, clinic_a
):
    assert invite(admin_client, clinic_a).status_code == 302
    mail.outbox.clear()

    response = invite(admin_client, clinic_a)

    assert response.status_code == 400
    assert ("Nora.Quinn@example.org was invited to Harbour Skin Clinic (Clinician) and has not chosen a password yet. "
            "To email the link again, tick them on the staff list and choose &quot;Send the invitation again&quot;."
            ) in response.content.decode()
    assert not mail.outbox
    listing = admin_client.get("/admin/clinic/membership/").content.decode()
    assert listing.count("Invitation not yet accepted") == 1  # Nora's, not the admin's own


def test_the_role_is_chosen_not_preselected_and_the_email_comes_from_the_clinic(admin_client, clinic_a):
    page = admin_client.get(INVITE).content.decode()
    assert '<option value="" selected>— choose a role —</option>' in page
    assert invite(admin_client, clinic_a, role="").status_code == 400
    assert not Membership.objects.filter(user__email__iexact="nora.quinn@example.org").exists()

    assert invite(admin_client, clinic_a).status_code == 302
    (message,) = mail.outbox
    assert message.from_email == "Harbour Skin Clinic <aftercare@localhost>"
