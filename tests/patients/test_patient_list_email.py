"""The patient list's e-mail addresses wrap after the "@" or a dot, never inside a word."""

from __future__ import annotations

from django.urls import reverse

from patients.admin.patients import email_with_break_points
from tests.factories import PatientFactory


def test_it_offers_a_break_after_the_at_sign_and_each_dot():
    assert email_with_break_points("chloe.martin@example.org") == "chloe.<wbr>martin@<wbr>example.<wbr>org"


def test_it_leaves_an_address_without_break_points_whole():
    assert email_with_break_points("chloe") == "chloe"
    assert email_with_break_points("") == ""


def test_it_escapes_a_hostile_address():
    # A quoted local part may hold almost anything and still pass Django's EmailValidator.
    html = email_with_break_points('"<script>alert(1)</script>"@evil.example')
    assert "<script>" not in html
    assert html == '&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;@<wbr>evil.<wbr>example'


def test_the_patient_list_renders_addresses_with_break_points(client, clinic_a, clinician):
    PatientFactory(clinic=clinic_a, email="chloe.martin@example.org")
    PatientFactory(clinic=clinic_a, email='"<b>bold</b>"@evil.example')
    client.force_login(clinician)
    body = client.get(reverse("admin:patients_patient_changelist")).content.decode()
    assert '<td class="field-email_address">chloe.<wbr>martin@<wbr>example.<wbr>org</td>' in body
    assert "&quot;&lt;b&gt;bold&lt;/b&gt;&quot;@<wbr>evil.<wbr>example" in body
    assert "<b>bold</b>" not in body


def test_the_patient_list_still_sorts_by_email(client, clinic_a, clinician):
    PatientFactory(clinic=clinic_a, email="zoe@example.org", family_name="First")
    PatientFactory(clinic=clinic_a, email="adam@example.org", family_name="Second")
    client.force_login(clinician)
    response = client.get(reverse("admin:patients_patient_changelist") + "?o=4")
    assert [p.email for p in response.context["cl"].result_list] == ["adam@example.org", "zoe@example.org"]
