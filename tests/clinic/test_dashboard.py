"""The admin landing page shows each of the person's clinics and nothing of others."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_it_shows_the_dashboard_with_zero_counts(client, clinician, clinic_a):
    client.force_login(clinician)
    response = client.get("/admin/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Harbour Skin Clinic" in body
    assert 'data-metric="treatments_today">0<' in body


def test_it_hides_other_clinics_from_the_dashboard(client, clinician, clinic_b):
    client.force_login(clinician)
    body = client.get("/admin/").content.decode()
    assert "Summit Dermatology" not in body


def test_it_refuses_staff_without_a_membership(client, django_user_model):
    user = django_user_model.objects.create_user("loner", password="x" * 16, is_staff=True)
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
