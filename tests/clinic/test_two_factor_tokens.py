"""An API token issued before the clinic required two-factor stops working until its holder sets it up.

The clinic admin who switches the rule on is told how many members' tokens
stop (a count, no names), and the access log records the change.
"""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinic.models import AuditEvent, Role
from clinic.two_factor import api_tokens_stopped
from tests.admin_forms import change_form_data
from tests.factories import ClinicFactory, staff

pytestmark = pytest.mark.django_db


def api_with_token(user) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return api


def switch_two_factor(client, clinic, *, on: bool):  # noqa: ANN201 - the admin's response
    page = f"/admin/clinic/clinic/{clinic.pk}/change/"
    data = change_form_data(client.get(page))
    if on:
        data["require_two_factor"] = "on"
    else:
        data.pop("require_two_factor", None)  # an unticked box is not posted
    return client.post(page, data)


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def clinic_admin(clinic_a):
    return staff(Role.CLINIC_ADMIN, clinic_a, username="admin_a")


@pytest.fixture
def old_token(clinician):
    """A token the clinician asked for while the clinic did not require two-factor."""
    api = api_with_token(clinician)
    assert api.get("/api/v1/me/").status_code == 200
    return api


def test_it_refuses_an_old_token_once_the_clinic_requires_two_factor(client, clinic_admin, clinic_a, old_token):
    client.force_login(clinic_admin)
    assert switch_two_factor(client, clinic_a, on=True).status_code == 302

    for path in ("/api/v1/me/", "/api/v1/clinics/", "/api/v1/patients/"):
        response = old_token.get(path)
        assert response.status_code == 403, path
        assert response.json()["detail"] == (
            "Your clinic requires two-factor sign-in and you have not set it up, so this token no longer works. "
            "Sign in to the staff site (/admin/) to set up your authenticator app, then request a new token with its code."
        )


def test_the_token_works_again_once_its_holder_confirms_a_device(clinic_a, clinician, old_token):
    clinic_a.require_two_factor = True
    clinic_a.save()
    device = TOTPDevice.objects.create(user=clinician, name="Authenticator app", confirmed=False)
    assert old_token.get("/api/v1/me/").status_code == 403  # enrolment begun is not enough

    device.confirmed = True
    device.save()

    assert old_token.get("/api/v1/me/").status_code == 200


def test_it_leaves_tokens_alone_where_the_rule_does_not_apply(clinic_a, clinic_b, clinician):
    enrolled = staff(Role.CLINICIAN, clinic_a, username="enrolled")
    TOTPDevice.objects.create(user=enrolled, confirmed=True)
    elsewhere = staff(Role.CLINICIAN, clinic_b, username="elsewhere")
    clinic_a.require_two_factor = True
    clinic_a.save()

    assert api_with_token(enrolled).get("/api/v1/me/").status_code == 200
    assert api_with_token(elsewhere).get("/api/v1/me/").status_code == 200
    assert api_with_token(clinician).get("/api/v1/me/").status_code == 403


def test_a_former_member_of_a_strict_clinic_keeps_their_token_elsewhere(clinic_a, clinic_b, clinician):
    # The rule follows active memberships: someone who left the strict clinic is judged by the clinics they work in.
    former = clinician.memberships.get(clinic=clinic_a)
    former.is_active = False
    former.save()
    clinician.memberships.create(clinic=clinic_b, role=Role.CLINICIAN)
    clinic_a.require_two_factor = True
    clinic_a.save()

    assert api_with_token(clinician).get("/api/v1/me/").status_code == 200


def test_switching_it_on_says_how_many_tokens_stop_and_logs_it(client, clinic_admin, clinic_a, clinic_b, clinician):
    api_with_token(clinician)
    api_with_token(staff(Role.COORDINATOR, clinic_a, username="desk"))
    enrolled = staff(Role.CLINICIAN, clinic_a, username="enrolled")
    TOTPDevice.objects.create(user=enrolled, confirmed=True)
    api_with_token(enrolled)
    staff(Role.AUDITOR, clinic_a, username="no_token")
    api_with_token(staff(Role.CLINICIAN, clinic_b, username="elsewhere"))
    client.force_login(clinic_admin)

    response = switch_two_factor(client, clinic_a, on=True)

    assert response.status_code == 302
    assert "Two-factor sign-in is now required. 2 members' API tokens stop working until they set up two-factor " \
           "sign-in and request a new token." in messages_of(response)
    event = AuditEvent.objects.get(action="clinic.two_factor_changed")
    assert (event.actor, event.clinic, event.object_id) == (clinic_admin, clinic_a, str(clinic_a.pk))
    assert event.detail == {"require_two_factor": True, "api_tokens_stopped": 2}


def test_switching_it_on_with_no_token_affected_says_so(client, clinic_admin, clinic_a):
    client.force_login(clinic_admin)

    response = switch_two_factor(client, clinic_a, on=True)

    assert "Two-factor sign-in is now required. No member's API token stops working." in messages_of(response)
    assert AuditEvent.objects.get(action="clinic.two_factor_changed").detail == {
        "require_two_factor": True, "api_tokens_stopped": 0,
    }


def test_switching_it_off_is_logged_too(client):
    strict = ClinicFactory(name="Strict Clinic", slug="strict", require_two_factor=True)
    admin = staff(Role.CLINIC_ADMIN, strict, username="strict_admin")
    device = TOTPDevice.objects.create(user=admin, confirmed=True)
    client.force_login(admin)
    code = f"{totp(device.bin_key, step=30, t0=0, digits=6, drift=0):06d}"
    assert client.post("/admin/two-factor/verify/", {"code": code}).status_code == 302

    response = switch_two_factor(client, strict, on=False)

    assert response.status_code == 302
    assert not [text for text in messages_of(response) if "Two-factor" in text]
    assert AuditEvent.objects.get(action="clinic.two_factor_changed").detail == {"require_two_factor": False}


def test_other_changes_to_the_clinic_log_no_two_factor_entry(client, clinic_admin, clinic_a):
    client.force_login(clinic_admin)
    page = f"/admin/clinic/clinic/{clinic_a.pk}/change/"
    data = {**change_form_data(client.get(page)), "sender_name": "Harbour Skin"}

    assert client.post(page, data).status_code == 302
    assert not AuditEvent.objects.filter(action="clinic.two_factor_changed").exists()


def test_it_does_not_count_members_already_held_to_two_factor_by_another_clinic(clinic_a, clinic_b, clinician):
    Token.objects.create(user=clinician)
    clinician.memberships.create(clinic=clinic_b, role=Role.CLINICIAN)
    clinic_b.require_two_factor = True
    clinic_b.save()
    assert api_tokens_stopped(clinic_a) == 0  # refused since clinic B required it

    clinic_b.require_two_factor = False
    clinic_b.save()
    assert api_tokens_stopped(clinic_a) == 1
