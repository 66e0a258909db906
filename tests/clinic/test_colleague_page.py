"""A clinic admin sees who a colleague is, never their password hash, permissions or account switches."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model

from clinic.models import Role
from tests.factories import staff

pytestmark = pytest.mark.django_db


def _labels(body: str) -> list[str]:
    return re.findall(r"<label[^>]*>([^<]+):</label>", body)


def test_a_clinic_admin_sees_a_colleagues_name_and_address_only(client, clinic_admin, clinic_a):
    nurse = staff(Role.CLINICIAN, clinic_a, username="nurse_x", email="nurse.x@harbour.example")
    client.force_login(clinic_admin)

    body = client.get(f"/admin/auth/user/{nurse.pk}/change/").content.decode()

    assert _labels(body) == ["Username", "First name", "Last name", "Email address"]
    assert nurse.password not in body and "pbkdf2" not in body and "md5$" not in body
    assert "nurse.x@harbour.example" in body


def test_the_operator_does_not_see_the_hash_either(rf):
    user_model = get_user_model()
    request = rf.get("/admin/auth/user/")
    request.user = user_model(username="operator", is_superuser=True, is_staff=True)

    fields = admin.site._registry[user_model].get_fields(request)

    assert "password" not in fields
    assert {"is_active", "is_staff", "username"} <= set(fields)
