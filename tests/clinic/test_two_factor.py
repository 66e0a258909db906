"""Staff of a clinic that requires it must enrol and use a TOTP device before any admin page or API call."""

from __future__ import annotations

import datetime as dt
import re
from base64 import b32decode

import pytest
import time_machine
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from clinic.models import Role
from tests.factories import PASSWORD, ClinicFactory, staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def strict_clinic():
    return ClinicFactory(name="Strict Clinic", slug="strict", require_two_factor=True)


def current_code(key: bytes) -> str:
    return f"{totp(key, step=30, t0=0, digits=6, drift=0):06d}"


def login(client, username: str) -> None:
    response = client.post("/admin/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302


def test_it_sends_a_new_staff_member_to_enrol_a_device(client, strict_clinic):
    staff(Role.CLINICIAN, strict_clinic, username="newdoc")
    login(client, "newdoc")
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/two-factor/setup/")
    page = client.get(response["Location"]).content.decode()
    assert "<svg" in page
    assert re.search(r'class="otp-secret">[A-Z2-7]{32}<', page)


def test_it_lets_them_in_after_a_correct_code_and_not_before(client, strict_clinic):
    user = staff(Role.CLINICIAN, strict_clinic, username="newdoc")
    login(client, "newdoc")
    page = client.get("/admin/two-factor/setup/").content.decode()
    secret = re.search(r'class="otp-secret">([A-Z2-7]+)<', page).group(1)
    key = b32decode(secret)
    wrong_code = "000000" if current_code(key) != "000000" else "111111"
    wrong = client.post("/admin/two-factor/setup/", {"code": wrong_code})
    assert wrong.status_code == 200
    assert "That code is not right" in wrong.content.decode()
    assert client.get("/admin/").status_code == 302
    # A failed attempt throttles the device for a moment (django-otp); wait it out.
    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(seconds=5)):
        ok = client.post("/admin/two-factor/setup/", {"code": current_code(key)})
    assert ok.status_code == 302
    assert TOTPDevice.objects.get(user=user).confirmed
    assert client.get("/admin/").status_code == 200


def test_it_asks_an_enrolled_user_for_a_code_at_every_sign_in(client, strict_clinic):
    user = staff(Role.CLINICIAN, strict_clinic, username="olddoc")
    device = TOTPDevice.objects.create(user=user, confirmed=True)
    login(client, "olddoc")
    response = client.get("/admin/patients/patient/")
    assert response["Location"] == "/admin/two-factor/verify/?next=/admin/patients/patient/"
    done = client.post("/admin/two-factor/verify/?next=/admin/patients/patient/", {"code": current_code(device.bin_key)})
    assert done["Location"] == "/admin/patients/patient/"


def test_it_does_not_ask_staff_of_clinics_that_do_not_require_it(client, clinic_a):
    staff(Role.CLINICIAN, clinic_a, username="relaxed")
    login(client, "relaxed")
    assert client.get("/admin/").status_code == 200


def test_it_refuses_an_unverified_browser_session_on_the_api(client, strict_clinic):
    staff(Role.CLINICIAN, strict_clinic, username="newdoc")
    login(client, "newdoc")
    response = client.get("/api/v1/clinics/")
    assert response.status_code == 403
    assert "two-factor" in response.json()["detail"]


def test_it_issues_an_api_token_only_with_a_valid_code(strict_clinic):
    user = staff(Role.CLINICIAN, strict_clinic, username="apidoc")
    device = TOTPDevice.objects.create(user=user, confirmed=True)
    api = APIClient()
    missing = api.post("/api/v1/auth/token/", {"username": "apidoc", "password": PASSWORD}, format="json")
    assert missing.status_code == 400
    assert "otp" in missing.json()
    ok = api.post(
        "/api/v1/auth/token/", {"username": "apidoc", "password": PASSWORD, "otp": current_code(device.bin_key)},
        format="json",
    )
    assert ok.status_code == 200
    assert ok.json()["token"]
