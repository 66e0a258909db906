"""A clinic's urgent phone number: validated as typed, warned about while missing, in the API and the demo."""

from __future__ import annotations

import io

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinic.admin import URGENT_PHONE_MISSING
from clinic.models import Clinic
from tests.admin_forms import change_form_data

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("typed", "href"),
    [
        ("+44 20 7946 0000", "tel:+442079460000"),
        ("(030) 901-820", "tel:030901820"),
        ("+49 (0)30 1234-5678", "tel:+493012345678"),  # the trunk zero is not dialled from abroad
        ("(0)30 1234-5678", "tel:03012345678"),
        ("123456", "tel:123456"),
    ],
)
def test_a_number_is_stored_as_typed_and_dialled_with_only_plus_and_digits(clinic_a, typed, href):
    clinic_a.urgent_phone = typed
    clinic_a.full_clean()
    clinic_a.save()
    clinic_a.refresh_from_db()
    assert clinic_a.urgent_phone == typed
    assert clinic_a.urgent_phone_href == href


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("020 7946 0000 ext. 12", "use only digits, spaces, +, - and parentheses"),
        ("+44/20/7946", "use only digits, spaces, +, - and parentheses"),
        ("12345", "has 6 to 20 digits; '12345' has 5"),
        ("+1 2345 6789 0123 4567 8901", "has 6 to 20 digits; '+1 2345 6789 0123 4567 8901' has 21"),
        ("   ", "has 6 to 20 digits"),
    ],
)
def test_a_bad_number_is_refused_with_a_clear_message(clinic_a, typed, message):
    clinic_a.urgent_phone = typed
    with pytest.raises(ValidationError) as refused:
        clinic_a.full_clean()
    assert message in " ".join(refused.value.message_dict["urgent_phone"])


def test_no_number_is_allowed_and_gives_no_link(clinic_a):
    clinic_a.full_clean()
    assert clinic_a.urgent_phone == "" and clinic_a.urgent_phone_href == ""


def test_the_clinic_page_warns_while_the_number_is_missing(client, clinic_a, clinic_admin):
    client.force_login(clinic_admin)
    url = reverse("admin:clinic_clinic_change", args=[clinic_a.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert URGENT_PHONE_MISSING in [str(m) for m in get_messages(page.wsgi_request)]
    assert "Patients are told to call you" in page.content.decode()
    assert 'name="urgent_phone"' in page.content.decode()

    clinic_a.urgent_phone = "+44 20 7946 0000"
    clinic_a.save()
    page = client.get(url)
    assert "Patients are told to call you" not in page.content.decode()


def test_the_clinic_page_saves_a_number_as_typed_and_refuses_a_bad_one(client, clinic_a, clinic_admin):
    client.force_login(clinic_admin)
    url = reverse("admin:clinic_clinic_change", args=[clinic_a.pk])
    data = change_form_data(client.get(url))

    refused = client.post(url, {**data, "urgent_phone": "call reception"})
    assert refused.status_code == 200
    assert "is not a phone number" in str(refused.context["adminform"].form.errors["urgent_phone"])
    assert Clinic.objects.get(pk=clinic_a.pk).urgent_phone == ""
    assert clinic_a.history.count() == 1  # nothing saved

    saved = client.post(url, {**data, "urgent_phone": "+44 (0)20 7946-0000"})
    assert saved.status_code == 302, saved.context["adminform"].form.errors
    assert Clinic.objects.get(pk=clinic_a.pk).urgent_phone == "+44 (0)20 7946-0000"
    assert URGENT_PHONE_MISSING not in [str(m) for m in get_messages(saved.wsgi_request)]


def test_saving_the_clinic_without_a_number_warns_again(client, clinic_a, clinic_admin):
    client.force_login(clinic_admin)
    url = reverse("admin:clinic_clinic_change", args=[clinic_a.pk])
    data = change_form_data(client.get(url))
    saved = client.post(url, {**data, "sender_name": "Harbour aftercare"}, follow=True)
    assert Clinic.objects.get(pk=clinic_a.pk).sender_name == "Harbour aftercare"
    assert "Patients are told to call you" in saved.content.decode()


def test_the_dashboard_shows_the_number_or_that_it_is_missing(client, clinician, clinic_a):
    client.force_login(clinician)
    body = client.get("/admin/").content.decode()
    assert 'data-metric="urgent_phone"><strong>Not set</strong>' in body
    clinic_a.urgent_phone = "+44 20 7946 0000"
    clinic_a.save()
    body = client.get("/admin/").content.decode()
    assert 'data-metric="urgent_phone">+44 20 7946 0000<' in body


def test_the_api_shows_the_number(clinician, clinic_a):
    clinic_a.urgent_phone = "+44 20 7946 0000"
    clinic_a.save()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=clinician).key}")
    assert api.get(f"/api/v1/clinics/{clinic_a.pk}/").json()["urgent_phone"] == "+44 20 7946 0000"
    refused = api.patch(f"/api/v1/clinics/{clinic_a.pk}/", {"urgent_phone": "1"}, format="json")
    assert refused.status_code in (403, 405)  # read-only
    assert Clinic.objects.get(pk=clinic_a.pk).urgent_phone == "+44 20 7946 0000"


def test_the_demo_clinic_gets_a_fictional_number_and_keeps_a_typed_one():
    call_command("seed_demo", stdout=io.StringIO())
    demo = Clinic.objects.get(slug="demo")
    assert demo.urgent_phone == "+44 20 7946 0000"  # Ofcom's drama range
    demo.full_clean()
    demo.urgent_phone = "020 7946 0999"
    demo.save()
    call_command("seed_demo", stdout=io.StringIO())
    assert Clinic.objects.get(slug="demo").urgent_phone == "020 7946 0999"


def test_the_migration_for_the_number_is_committed():
    out = io.StringIO()
    call_command("makemigrations", "clinic", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
