"""Signed patient links: opaque, expiring, single-use where they change state, rate-limited."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import signing
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from patients.links import LinkError, consume_link, create_link, read_link, token_for
from patients.models import PatientLink
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


def test_it_puts_only_an_opaque_id_in_the_token():
    patient = PatientFactory(given_name="Rosalind", email="rosalind@mail.example")
    link = create_link(patient=patient, purpose=PatientLink.Purpose.UNSUBSCRIBE)
    token = token_for(link)
    payload = signing.loads(token, salt="aftercare.patient-link")
    assert payload == link.opaque_id
    assert len(payload) >= 32
    assert payload not in {str(patient.pk), patient.email}
    assert "rosalind" not in token.lower()
    assert read_link(token) == link


def test_it_refuses_a_tampered_token():
    link = create_link(patient=PatientFactory(), purpose=PatientLink.Purpose.UNSUBSCRIBE)
    token = token_for(link)
    with pytest.raises(LinkError, match="not valid"):
        read_link(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))


def test_it_refuses_an_expired_link_naming_the_clinic():
    patient = PatientFactory()
    link = create_link(patient=patient, purpose=PatientLink.Purpose.UNSUBSCRIBE, valid_for=dt.timedelta(days=1))
    with time_machine.travel(timezone.now() + dt.timedelta(days=2)), pytest.raises(LinkError, match="expired") as error:
        read_link(token_for(link))
    assert patient.clinic.contact_email in str(error.value)


def test_it_uses_a_single_use_link_once():
    link = create_link(patient=PatientFactory(), purpose=PatientLink.Purpose.INTAKE)
    assert consume_link(link) is True
    assert consume_link(link) is False
    link.refresh_from_db()
    assert link.used_at is not None


def test_it_shows_a_friendly_page_for_a_bad_link_and_changes_nothing(client):
    before = PatientLink.objects.count()
    response = client.get("/p/not-a-real-token/")
    assert response.status_code == 410
    assert "This link can" in response.content.decode()
    assert "Nothing has been changed" in response.content.decode()
    assert PatientLink.objects.count() == before


@override_settings(AFTERCARE_PATIENT_LINK_RATE_PER_MINUTE=5)
def test_it_slows_down_one_address_guessing_tokens(client):
    statuses = [client.get(f"/p/guess-{n}/").status_code for n in range(7)]
    assert statuses[:5] == [410] * 5
    assert statuses[5:] == [429, 429]
    other = client.get("/p/guess-x/", REMOTE_ADDR="10.9.9.9")
    assert other.status_code == 410


def _unsubscribe_url() -> str:
    return f"/p/{token_for(create_link(patient=PatientFactory(), purpose=PatientLink.Purpose.UNSUBSCRIBE))}/"


@override_settings(AFTERCARE_PATIENT_LINK_RATE_PER_MINUTE=5)
def test_junk_from_a_shared_address_does_not_refuse_a_patients_real_link(client):
    # Behind a proxy nobody configured, a clinic's Wi-Fi or a carrier's NAT, everyone has one address.
    url = _unsubscribe_url()
    junk = [client.get(f"/p/junk-{n}/").status_code for n in range(6)]

    assert junk[-1] == 429
    assert client.get(url).status_code == 200


@override_settings(AFTERCARE_PATIENT_LINK_RATE_PER_MINUTE=5)
def test_a_real_link_opened_too_often_is_slowed_on_its_own(client):
    url, other_url = _unsubscribe_url(), _unsubscribe_url()
    statuses = [client.get(url).status_code for _ in range(6)]

    assert statuses == [200] * 5 + [429]
    assert client.get(other_url).status_code == 200
    assert client.get("/p/junk/").status_code == 410


@override_settings(AFTERCARE_PATIENT_LINK_RATE_PER_MINUTE=5, AFTERCARE_TRUSTED_PROXIES=1)
def test_behind_one_trusted_proxy_two_clients_have_separate_budgets(client):
    guesser = [client.get(f"/p/guess-{n}/", headers={"X-Forwarded-For": "203.0.113.66"}).status_code
               for n in range(6)]
    neighbour = client.get("/p/guess-x/", headers={"X-Forwarded-For": "198.51.100.7"})

    assert guesser[-1] == 429
    assert neighbour.status_code == 410


@override_settings(AFTERCARE_PATIENT_LINK_RATE_PER_MINUTE=5, AFTERCARE_TRUSTED_PROXIES=1)
def test_a_spoofed_left_most_forwarded_address_buys_no_new_budget(client):
    statuses = [client.get(f"/p/guess-{n}/", headers={"X-Forwarded-For": f"10.0.0.{n}, 203.0.113.66"}).status_code
                for n in range(7)]

    assert statuses[5:] == [429, 429]


@override_settings(AFTERCARE_PATIENT_LINK_RATE_PER_MINUTE=5)
def test_with_no_trusted_proxy_a_forwarded_header_buys_no_new_budget(client):
    statuses = [client.get(f"/p/guess-{n}/", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
                for n in range(7)]

    assert statuses[5:] == [429, 429]
