"""The browser review's case end to end: a patient flags a problem on a phone, a clinician finds it in the admin.

The patient reports severe redness, pain 8 and "Yellow crusts and fever since last
night" with the problem box ticked; the clinician sees the count on the dashboard,
follows it to the list, opens the treatment, and marks the problem reviewed with a note.
"""

from __future__ import annotations

import pytest

from clinic.models import Role
from patients.models import OutcomeAssessment
from tests.e2e.conftest import admin_login, screenshot
from tests.factories import PASSWORD, staff

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WORDS = "Yellow crusts and fever since last night"
PAGE_OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.fixture
def desk(browser):  # noqa: ANN001, ANN201
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


def test_a_problem_flagged_on_a_phone_is_found_from_the_dashboard_and_marked_reviewed(
    phone, desk, self_report_url, live_server, clinic_a
):
    phone.goto(self_report_url)
    phone.check("#id_erythema_4")
    phone.select_option("#id_pain", "8")
    phone.select_option("#id_pruritus", "2")
    phone.check("input[name=applied_as_instructed][value=yes]")
    phone.fill("#id_notes", WORDS)
    phone.check("#id_problem_flagged")
    phone.click("button[type=submit]")
    phone.wait_for_selector("text=Thank you")

    clinician = staff(Role.CLINICIAN, clinic_a, username="dr_flags", first_name="Ada", last_name="Lane")
    admin_login(desk, live_server, "dr_flags", PASSWORD)
    count = desk.locator('[data-metric="problems_unreviewed"] a')
    assert count.inner_text() == "1"
    count.click()
    desk.wait_for_selector("#result_list")
    assert WORDS in desk.locator("#result_list").inner_text()
    desk.click("#result_list a[href$='#patient-reports']")
    section = desk.locator("#patient-reports")
    section.wait_for()
    assert WORDS in section.inner_text() and "Not reviewed" in section.inner_text()
    assert desk.evaluate(PAGE_OVERFLOW) <= 0  # the reports table fits a 1280 px desk
    screenshot(desk, "treatment-patient-reports")
    section.locator("textarea[name=note]").fill("Phoned her: seen tomorrow at 9:00")
    section.locator("button", has_text="Mark reviewed").click()
    desk.wait_for_selector("text=is marked reviewed")

    report = OutcomeAssessment.objects.get(source="patient")
    assert (report.flag_reviewed_by, report.flag_review_note) == (clinician, "Phoned her: seen tomorrow at 9:00")
    assert "Reviewed by Ada Lane" in desk.locator("#patient-reports").inner_text()
    desk.goto(f"{live_server.url}/admin/")
    assert desk.locator('[data-metric="problems_unreviewed"]').inner_text() == "0"
