"""The self-report page in a real browser on a phone-sized screen: send, come back, correct."""

from __future__ import annotations

import pytest
from PIL import Image

from patients.models import OutcomeAssessment, OutcomePhoto
from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_patient_reports_and_then_corrects_on_a_phone(phone, self_report_url, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    picture = tmp_path / "cheek.jpg"
    Image.new("RGB", (120, 90), (190, 110, 100)).save(picture, format="JPEG")

    phone.goto(self_report_url)
    phone.check("#id_erythema_3")
    phone.select_option("#id_pain", "4")
    phone.select_option("#id_pruritus", "2")
    phone.check("input[name=applied_as_instructed][value=yes]")
    phone.set_input_files("#id_photo", str(picture))
    screenshot(phone, "self-report-form")
    phone.click("button[type=submit]")
    phone.wait_for_selector("text=Thank you")

    report = OutcomeAssessment.objects.get(source="patient")
    assert (report.erythema, report.pain, report.pruritus, report.applied_as_instructed) == (3, 4, 2, True)
    assert OutcomePhoto.objects.filter(assessment=report).count() == 1

    phone.goto(self_report_url)
    assert phone.is_checked("#id_erythema_3")
    phone.check("#id_erythema_2")
    phone.click("button[type=submit]")
    phone.wait_for_selector("text=corrected")
    report.refresh_from_db()
    assert report.erythema == 2
    assert report.history.count() == 2

    phone.reload()  # the thank-you page was reached by a redirect: reloading it sends nothing again
    phone.wait_for_selector("text=corrected")
    assert report.history.count() == 2


def test_the_page_fits_a_phone_without_sideways_scrolling(phone, self_report_url):
    phone.goto(self_report_url)
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
