"""A clinician logs into the admin and sees their clinic; a user of another clinic sees none of it."""

from __future__ import annotations

import pytest

from clinic.models import Role
from tests.e2e.conftest import admin_login, screenshot
from tests.factories import PASSWORD, PatientFactory, staff

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_it_shows_a_clinician_their_dashboard(page, live_server, clinic_a):
    staff(Role.CLINICIAN, clinic_a, username="dr_harbour")
    admin_login(page, live_server, "dr_harbour", PASSWORD)
    page.wait_for_selector(".aftercare-dashboard")
    assert page.locator("#site-name").inner_text().strip() == "Aftercare"
    board = page.locator('.aftercare-clinic[data-clinic="harbour"]')
    assert board.locator("h2").inner_text() == "Harbour Skin Clinic"
    assert board.locator('[data-metric="treatments_today"]').inner_text() == "0"
    screenshot(page, "dashboard")


def test_it_shows_another_clinics_user_none_of_its_data(page, live_server, clinic_a, clinic_b):
    PatientFactory(clinic=clinic_a, given_name="Harriet", family_name="Harbourside")
    staff(Role.CLINICIAN, clinic_b, username="dr_summit")
    admin_login(page, live_server, "dr_summit", PASSWORD)
    page.wait_for_selector(".aftercare-dashboard")
    assert "Summit Dermatology" in page.content()
    assert "Harbour Skin Clinic" not in page.content()
    for path in ("/admin/patients/patient/", "/admin/clinic/clinic/"):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status < 500
        assert "Harbourside" not in page.content()
        assert "Harbour Skin Clinic" not in page.content()


def test_it_refuses_a_wrong_password(page, live_server, clinic_a):
    staff(Role.CLINICIAN, clinic_a, username="dr_typo")
    admin_login(page, live_server, "dr_typo", "not-the-password")
    assert "Please enter the correct username and password" in page.content()
    assert page.locator(".aftercare-dashboard").count() == 0


def test_it_renders_the_api_docs_under_the_content_security_policy(page, live_server):
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Aftercare API" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock-tag").count() >= 1
    assert violations == []
