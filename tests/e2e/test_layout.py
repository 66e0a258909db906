"""Pages fit the screens they are used on: a 1280 px desk for staff, a 390 px phone for patients.

A browser review found the record-treatment form ~1480 px wide, the patient list's last
columns behind a sideways scroll, and the redness radios of the self-report shrunk unevenly.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from clinic.models import Role
from patients.models import OutcomeAssessment
from protocols.defaults import install_example_protocols
from tests.e2e.conftest import admin_login, screenshot
from tests.factories import PASSWORD, ClinicFactory, MembershipFactory, PatientFactory, TreatmentFactory, staff

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DESK = {"width": 1280, "height": 800}
# How far the page, and the changelist's table, reach past their boxes (0 when they fit).
PAGE_OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
TABLE_OVERFLOW = """() => {
  const table = document.querySelector('#result_list');
  return Math.ceil(table.getBoundingClientRect().width) - table.parentElement.clientWidth;
}"""


@pytest.fixture
def desk(browser):  # noqa: ANN001, ANN201
    context = browser.new_context(viewport=DESK)
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


@pytest.fixture
def clinic(clinic_a, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()  # rate limits count per address, and every browser here is 127.0.0.1
    install_example_protocols(clinic=clinic_a)  # the example products and lots, with their long names
    for n, (given, family) in enumerate([("Maximiliane", "Vandenberghe-Okonkwo"), ("Bartholomew", "Featherstonehaugh")]):
        email = f"{given}.{family}.{n}@long-patient-mail.example".lower()
        PatientFactory(clinic=clinic_a, given_name=given, family_name=family, email=email)
    return clinic_a


def test_the_record_treatment_form_fits_a_1280_px_screen(desk, live_server, clinic):
    staff(Role.CLINICIAN, clinic, username="dr_wide")
    patient = PatientFactory(clinic=clinic, given_name="Priya", family_name="Raman")
    admin_login(desk, live_server, "dr_wide", PASSWORD)
    desk.wait_for_selector(".aftercare-dashboard")
    desk.goto(f"{live_server.url}{reverse('admin:patients_treatment_add')}?patient={patient.pk}")
    desk.wait_for_selector("#applications select")
    assert desk.locator("#applications select option").count() > 1  # the lots are offered
    screenshot(desk, "layout-record-treatment")
    assert desk.evaluate(PAGE_OVERFLOW) <= 0
    for formset in ("#applications", "#arms"):
        table_width = desk.evaluate(f"document.querySelector('{formset} table').scrollWidth")
        assert table_width <= desk.evaluate(f"document.querySelector('{formset}').clientWidth")


def test_the_dashboard_keeps_its_counts_inside_their_box_while_the_urgent_phone_is_missing(desk, live_server, clinic):
    # The note that the number is missing ran out of the box and squeezed each count's name to a letter a line.
    assert not clinic.urgent_phone
    staff(Role.CLINICIAN, clinic, username="dr_board")
    admin_login(desk, live_server, "dr_board", PASSWORD)
    desk.wait_for_selector(".aftercare-dashboard")

    box = desk.locator(".aftercare-clinic").bounding_box()
    table = desk.locator(".aftercare-clinic table").bounding_box()
    names = desk.locator(".aftercare-clinic th[scope=row]")
    assert table["x"] + table["width"] <= box["x"] + box["width"] + 1
    # Each name keeps most of the row (squeezed, it was 20 px wide).
    assert min(names.nth(n).bounding_box()["width"] for n in range(names.count())) > box["width"] / 2


def test_the_patient_list_shows_every_column_at_1280_px(desk, live_server, clinic):
    staff(Role.CLINICIAN, clinic, username="dr_list")
    admin_login(desk, live_server, "dr_list", PASSWORD)
    desk.wait_for_selector(".aftercare-dashboard")
    desk.goto(f"{live_server.url}{reverse('admin:patients_patient_changelist')}")
    desk.wait_for_selector("#result_list")
    screenshot(desk, "layout-patient-list")
    assert desk.evaluate(PAGE_OVERFLOW) <= 0
    assert desk.evaluate(TABLE_OVERFLOW) <= 0
    # One clinic: its name on every row says nothing; the latest screening is in view.
    assert desk.locator("#result_list th.column-clinic").count() == 0
    assert desk.locator("#result_list th.column-latest_screening").is_visible()


def test_the_patient_list_of_someone_in_two_clinics_names_the_clinic_and_still_fits(desk, live_server, clinic):
    user = staff(Role.CLINICIAN, clinic, username="dr_two")
    other = ClinicFactory(name="Northern Aesthetic and Laser Clinic", slug="northern")
    MembershipFactory(user=user, clinic=other, role=Role.CLINICIAN)
    PatientFactory(
        clinic=other, given_name="Annemarie", family_name="Lindqvist-Castellanos",
        email="annemarie.lindqvist@long-patient-mail.example",
    )
    admin_login(desk, live_server, "dr_two", PASSWORD)
    desk.wait_for_selector(".aftercare-dashboard")
    desk.goto(f"{live_server.url}{reverse('admin:patients_patient_changelist')}")
    desk.wait_for_selector("#result_list")
    screenshot(desk, "layout-patient-list-two-clinics")
    assert desk.locator("#result_list th.column-clinic").count() == 1
    assert desk.evaluate(PAGE_OVERFLOW) <= 0
    assert desk.evaluate(TABLE_OVERFLOW) <= 0


# The pieces of the listed addresses that the browser split over two lines although they fit on one. An
# address may wrap after its "@", a dot or a hyphen; inside a piece only when that piece alone is wider
# than the column (the last resort that keeps the list within the screen).
SPLIT_EMAIL_PIECES = """[...document.querySelectorAll('#result_list td[class^=field-email]')].flatMap(cell => {
  const style = getComputedStyle(cell);
  const room = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const texts = [...cell.childNodes].filter(node => node.nodeType === Node.TEXT_NODE);
  // The text node and offset of a position in the whole address: a piece starts in the node that holds
  // its first character and ends in the one that holds its last (not across a <wbr>).
  const at = (offset, end) => {
    for (const node of texts) {
      if (offset < node.data.length || (end && offset === node.data.length)) return [node, offset];
      offset -= node.data.length;
    }
  };
  const ruler = document.createElement('span');
  ruler.style.whiteSpace = 'nowrap';
  cell.appendChild(ruler);
  let start = 0;
  const split = texts.map(node => node.data).join('').split(/(?<=[@.-])/).filter(piece => {
    const range = document.createRange();
    range.setStart(...at(start, false));
    range.setEnd(...at(start + piece.length, true));
    start += piece.length;
    ruler.textContent = piece.replace(/-$/, '');
    return range.getClientRects().length > 1 && ruler.getBoundingClientRect().width <= room;
  });
  ruler.remove();
  return split;
})"""
WRAPPED_EMAIL_CELLS = """[...document.querySelectorAll('#result_list td[class^=field-email]')]
  .filter(cell => cell.getBoundingClientRect().height > 1.5 * parseFloat(getComputedStyle(cell).lineHeight))
  .length"""


def test_the_patient_list_wraps_an_address_after_the_at_sign_or_a_dot_not_inside_a_word(desk, live_server, clinic):
    user = staff(Role.CLINICIAN, clinic, username="dr_mail")
    other = ClinicFactory(name="Northern Aesthetic and Laser Clinic", slug="northern")
    MembershipFactory(user=user, clinic=other, role=Role.CLINICIAN)
    PatientFactory(clinic=other, given_name="Chloe", family_name="Martin", email="chloe.martin@example.org")
    admin_login(desk, live_server, "dr_mail", PASSWORD)
    desk.wait_for_selector(".aftercare-dashboard")
    desk.goto(f"{live_server.url}{reverse('admin:patients_patient_changelist')}")
    desk.wait_for_selector("#result_list")
    screenshot(desk, "layout-patient-list-emails")
    assert desk.evaluate(WRAPPED_EMAIL_CELLS) > 0  # the column is narrow enough that addresses wrap
    assert desk.evaluate(SPLIT_EMAIL_PIECES) == []
    assert desk.evaluate(TABLE_OVERFLOW) <= 0


def test_the_redness_radios_of_the_self_report_are_all_the_same_size_on_a_phone(phone, self_report_url):
    phone.goto(self_report_url)
    screenshot(phone, "layout-self-report")
    sizes = phone.evaluate("""[...document.querySelectorAll('input[name=erythema]')]
      .map(i => { const r = i.getBoundingClientRect(); return [r.width, r.height]; })""")
    assert len(sizes) == 5
    assert len(set(map(tuple, sizes))) == 1, sizes
    # Every question's heading sits inside its box and looks alike, legend or label.
    headings = phone.evaluate("""[...document.querySelectorAll('fieldset')].map(f => {
      const h = f.querySelector(':scope > legend, :scope > label:not(.choice)');
      if (!h) return null;
      const s = getComputedStyle(h);
      return [s.fontSize, s.fontWeight, h.getBoundingClientRect().top > f.getBoundingClientRect().top];
    }).filter(Boolean)""")
    assert len(headings) >= 4
    assert len({tuple(h) for h in headings}) == 1, headings
    assert headings[0][2] is True


def test_the_treatment_page_wraps_a_5000_character_review_note_within_1280_px(desk, live_server, clinic):
    # A browser walk-through found the page 13,865 px wide: an unbroken note does not wrap by itself.
    clinician = staff(Role.CLINICIAN, clinic, username="dr_note")
    ended = timezone.now() - dt.timedelta(days=3)
    treatment = TreatmentFactory(screening__patient__clinic=clinic, started_at=ended - dt.timedelta(hours=1),
                                 ended_at=ended)
    OutcomeAssessment.objects.create(
        treatment=treatment, time_point_day=3, source="patient", erythema=1, problem_flagged=True, notes="y" * 5000,
        flag_reviewed_at=timezone.now(), flag_reviewed_by=clinician, flag_review_note="x" * 5000,
    )
    admin_login(desk, live_server, "dr_note", PASSWORD)
    desk.wait_for_selector(".aftercare-dashboard")
    desk.goto(f"{live_server.url}{reverse('admin:patients_treatment_change', args=[treatment.pk])}")
    desk.wait_for_selector("#patient-reports")
    screenshot(desk, "layout-treatment-long-note")
    assert desk.evaluate(PAGE_OVERFLOW) <= 0
