"""A patient link that cannot be used: the page carries the clinic's name and contact when the link is ours.

A link we found (expired, used, or missing what it points to) was sent by a
known clinic, and the patient should see who to ask. A garbled, tampered or
unknown token tells nothing: the page is headed "Aftercare" and names no clinic.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.core import signing
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from patients.links import consume_link, create_link, token_for
from patients.models import PatientLink
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def patient(clinic_a):
    return PatientFactory(clinic=clinic_a)


def _header(body: str) -> str:
    return re.search(r'<header class="clinic-header">(.*?)</header>', body, re.S).group(1).strip()


def _footer(body: str) -> str:
    return re.search(r"<footer>(.*?)</footer>", body, re.S).group(1).strip()


def _open(client, link: PatientLink) -> tuple[int, str]:
    response = client.get(f"/p/{token_for(link)}/")
    return response.status_code, response.content.decode()


def _assert_headed_by(body: str, clinic) -> None:  # noqa: ANN001
    assert _header(body) == clinic.name
    assert f'href="mailto:{clinic.contact_email}"' in _footer(body)
    assert clinic.name in re.search(r"<title>(.*?)</title>", body, re.S).group(1)


def _assert_anonymous(body: str, clinic) -> None:  # noqa: ANN001
    assert _header(body) == "Aftercare"
    assert _footer(body) == ""
    assert clinic.name not in body
    assert clinic.contact_email not in body


@pytest.mark.parametrize("purpose", [PatientLink.Purpose.UNSUBSCRIBE, PatientLink.Purpose.INTAKE])
def test_an_expired_link_is_headed_with_the_clinic_and_its_contact(client, patient, clinic_a, purpose):
    link = create_link(patient=patient, purpose=purpose, valid_for=dt.timedelta(days=1))
    with time_machine.travel(timezone.now() + dt.timedelta(days=2)):
        status, body = _open(client, link)
    assert status == 410
    assert "This link has expired" in body
    _assert_headed_by(body, clinic_a)
    assert "<title>Link not available — Harbour Skin Clinic</title>" in body


def test_a_used_intake_link_is_headed_with_the_clinic(client, patient, clinic_a):
    link = create_link(patient=patient, purpose=PatientLink.Purpose.INTAKE)
    consume_link(link)
    status, body = _open(client, link)
    assert status == 410
    _assert_headed_by(body, clinic_a)


def test_a_step_done_link_without_its_reminder_is_headed_with_the_clinic(client, patient, clinic_a):
    link = create_link(patient=patient, purpose=PatientLink.Purpose.DONE)
    status, body = _open(client, link)
    assert status == 410
    assert "This link is not valid" in body
    _assert_headed_by(body, clinic_a)


def test_a_garbled_token_names_no_clinic(client, patient, clinic_a):
    response = client.get("/p/not-a-real-token/")
    assert response.status_code == 410
    _assert_anonymous(response.content.decode(), clinic_a)


def test_a_tampered_token_of_a_real_expired_link_names_no_clinic(client, patient, clinic_a):
    link = create_link(patient=patient, purpose=PatientLink.Purpose.UNSUBSCRIBE, valid_for=dt.timedelta(days=1))
    token = token_for(link)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with time_machine.travel(timezone.now() + dt.timedelta(days=2)):
        response = client.get(f"/p/{tampered}/")
    assert response.status_code == 410
    _assert_anonymous(response.content.decode(), clinic_a)


def test_a_signed_token_for_no_link_of_ours_names_no_clinic(client, patient, clinic_a):
    unknown = signing.dumps("no-such-link-" + "x" * 32, salt="aftercare.patient-link", compress=False)
    response = client.get(f"/p/{unknown}/")
    assert response.status_code == 410
    _assert_anonymous(response.content.decode(), clinic_a)


@override_settings(AFTERCARE_PATIENT_LINK_RATE_PER_MINUTE=1)
def test_a_refused_attempt_names_no_clinic(client, patient, clinic_a):
    link = create_link(patient=patient, purpose=PatientLink.Purpose.UNSUBSCRIBE)
    client.get(f"/p/{token_for(link)}/")
    status, body = _open(client, link)
    assert status == 429
    _assert_anonymous(body, clinic_a)
