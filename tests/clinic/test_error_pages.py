"""Staff who reach a page their role does not allow get a page that says so and leads back, not a bare "403 Forbidden"."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.django_db


def test_a_coordinator_on_the_record_treatment_page_is_told_why_and_led_back(client, coordinator):
    client.force_login(coordinator)
    response = client.get("/admin/patients/treatment/add/")
    assert response.status_code == 403
    body = response.content.decode()
    assert "You are not allowed to do this" in body
    assert 'href="/admin/">Back to the dashboard</a>' in body
    assert "Memberships" in body


def test_the_reason_given_by_the_app_is_shown(client, coordinator, clinic_a):
    from tests.factories import PatientFactory, ScreeningFactory

    screening = ScreeningFactory(patient=PatientFactory(clinic=clinic_a), outcome="needs_override")
    client.force_login(coordinator)
    response = client.post(f"/admin/patients/patient/{screening.patient_id}/screenings/{screening.pk}/",
                           {"reason": "Antiviral prophylaxis prescribed."})
    assert response.status_code == 403
    assert "Only a clinician may override a screening." in response.content.decode()


def test_the_page_carries_the_site_header_and_the_staff_menu(client, coordinator):
    client.force_login(coordinator)
    response = client.get("/admin/patients/treatment/add/")
    assert response.status_code == 403
    body = response.content.decode()
    assert '<div id="site-name"><a href="/admin/">Aftercare</a></div>' in body
    assert "Django administration" not in body
    assert 'action="/admin/logout/"' in body  # the person can still sign out from here


def test_a_403_under_the_api_from_a_view_not_of_drf_is_json(rf, coordinator):
    from django.core.exceptions import PermissionDenied

    from clinic.api.errors import permission_denied

    request = rf.get("/api/v1/not-drf/")
    request.user = coordinator
    response = permission_denied(request, PermissionDenied("No."))
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"detail": "You do not have permission to perform this action."}
