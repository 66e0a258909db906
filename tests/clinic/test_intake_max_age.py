"""A clinic's intake age: a number of days within plausible bounds, refused with a clear message otherwise."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from clinic.models import Clinic
from tests.admin_forms import change_form_data

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("days", [0, 366, 100000])
def test_it_refuses_an_implausible_intake_age(clinic_a, days):
    clinic_a.intake_max_age_days = days
    with pytest.raises(ValidationError) as refused:
        clinic_a.full_clean()
    assert "Give a number of days from 1 to 365" in " ".join(refused.value.message_dict["intake_max_age_days"])


@pytest.mark.parametrize("days", [1, 30, 365])
def test_it_accepts_an_intake_age_within_a_year(clinic_a, days):
    clinic_a.intake_max_age_days = days
    clinic_a.full_clean()


@pytest.mark.parametrize("days", ["0", "100000"])
def test_the_clinic_page_shows_the_error_and_saves_nothing(client, clinic_a, clinic_admin, days):
    client.force_login(clinic_admin)
    url = reverse("admin:clinic_clinic_change", args=[clinic_a.pk])
    data = change_form_data(client.get(url))

    refused = client.post(url, {**data, "intake_max_age_days": days})
    assert refused.status_code == 200
    assert "Give a number of days from 1 to 365" in str(refused.context["adminform"].form.errors["intake_max_age_days"])
    assert Clinic.objects.get(pk=clinic_a.pk).intake_max_age_days == 30
    assert clinic_a.history.count() == 1  # nothing saved

    saved = client.post(url, {**data, "intake_max_age_days": "90"})
    assert saved.status_code == 302, saved.context["adminform"].form.errors
    assert Clinic.objects.get(pk=clinic_a.pk).intake_max_age_days == 90
