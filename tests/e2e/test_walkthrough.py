"""The whole clinical flow in a real browser, clicked through the way the people who use it would.

A clinician signs in with her second factor, creates a patient, records an
intake that blocks the screening (pregnant), records a corrected intake,
screens clear, records a microneedling treatment with an exosome lot and reads
its timeline.  Three days later the reminders have gone out; she signs in
again and logs the day-3 scores, the patient answers the self-check from the
reminder email on her phone, and an auditor downloads the outcome log as CSV.

The app's clock is moved with time-machine (server thread and test alike), so
"three days later" is real for every rule that checks dates: idle sessions,
due reminders, "day 3 has not come yet", TOTP codes.  Screenshots go to
var/screenshots; with AFTERCARE_SCREENSHOTS=1 the key pages are also copied to
docs/screenshots for the README.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from base64 import b32decode
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.core.cache import cache
from django_otp.oath import totp

from clinic.models import Role
from patients.models import Export, OutcomeAssessment, Treatment
from patients.reminders import send_due_inline
from protocols.defaults import install_default_rules, install_example_protocols
from protocols.facts import FACTS, FactType
from tests.e2e.conftest import screenshot
from tests.factories import PASSWORD, ClinicFactory, staff

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LONDON = ZoneInfo("Europe/London")
CLINICIAN, AUDITOR = "dr_harbour", "audit_harbour"
PATIENT = {"given": "Maya", "family": "Okafor", "born": "1991-06-14", "email": "maya.okafor@mail.example"}
PROTOCOL = "Microneedling + exosome v1 (published)"
LOT = "ADSC-DEMO-0425"
# Badge and border colours by severity (templates/admin/patients/patient/_styles.html).
BLOCKED_BADGE, CLEAR_BADGE, ABSOLUTE_BORDER = "rgb(249, 214, 213)", "rgb(223, 243, 228)", "rgb(192, 57, 43)"


@pytest.fixture
def clinic(db, settings):
    """A clinic that requires two-factor sign-in, seeded with the default rules and the example protocols and lots."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()  # rate limits count per address, and every browser here is 127.0.0.1
    clinic = ClinicFactory(
        name="Harbour Skin Clinic", slug="harbour", time_zone="Europe/London", require_two_factor=True,
        contact_email="desk@harbour.example",
    )
    install_default_rules()
    install_example_protocols(clinic=clinic)  # and the example products and lots
    staff(Role.CLINICIAN, clinic, username=CLINICIAN)
    staff(Role.AUDITOR, clinic, username=AUDITOR)
    return clinic


@pytest.fixture
def second_desk(browser):  # noqa: ANN001, ANN201
    """The auditor's computer: a browser context of its own, so no session is shared with the clinician."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


# --- signing in and reading pages ------------------------------------------------------------


def current_code(secret: str) -> str:
    """The six digits an authenticator app shows now for ``secret``."""
    return f"{totp(b32decode(secret), step=30, t0=0, digits=6, drift=0):06d}"


def sign_in(page, url: str, username: str, *, secrets: dict[str, str]) -> None:  # noqa: ANN001
    """Password, then the second factor: enrol on the first visit (typing the key shown), verify after that."""
    page.goto(f"{url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    if username not in secrets:
        page.wait_for_selector("text=Set up two-factor sign-in")
        assert page.locator(".qr svg").count() == 1
        secrets[username] = page.locator(".otp-secret").inner_text().strip()
        submit = "Confirm and continue"
    else:
        page.wait_for_selector("text=Enter the six-digit code")
        submit = "Verify"
    page.fill("#id_code", current_code(secrets[username]))
    page.click(f"input[value='{submit}']")
    page.wait_for_selector(".aftercare-dashboard")


def metric(page, name: str) -> str:  # noqa: ANN001
    return page.locator(f'.aftercare-clinic[data-clinic="harbour"] [data-metric="{name}"]').inner_text().strip()


def message(page) -> str:  # noqa: ANN001
    """The admin's message after a save ("… was added successfully.")."""
    page.wait_for_selector("ul.messagelist li")
    return page.locator("ul.messagelist li").first.inner_text()


def colour(page, selector: str, prop: str = "backgroundColor") -> str:  # noqa: ANN001
    return page.locator(selector).first.evaluate(f"element => getComputedStyle(element).{prop}")


def open_app_page(page, name: str) -> None:  # noqa: ANN001
    """Follow a model's link in the dashboard's list of apps."""
    page.click(f"#content-main a:text-is('{name}')")
    page.wait_for_selector("#changelist")


# --- the clinician, day 0 ------------------------------------------------------------------------


def create_patient(page) -> None:  # noqa: ANN001
    """Patients → Add patient: the admin's add form, with consent to email reminders given today."""
    open_app_page(page, "Patients")
    page.click(".object-tools a.addlink")
    page.wait_for_selector("text=Add patient")
    page.select_option("#id_clinic", label="Harbour Skin Clinic")
    page.fill("#id_given_name", PATIENT["given"])
    page.fill("#id_family_name", PATIENT["family"])
    page.fill("#id_date_of_birth", PATIENT["born"])
    page.fill("#id_email", PATIENT["email"])
    page.select_option("#id_fitzpatrick_type", label="Type III")
    page.check("#id_reminder_consent")
    # Typed, not the admin's Today/Now buttons: those read the browser's clock, which time-machine does not
    # move, so after 09:30 real time "Now" lies in the app's future and the consent is refused.
    signed = dt.datetime.now(LONDON) - dt.timedelta(minutes=5)
    page.fill("#id_consent_at_0", f"{signed:%Y-%m-%d}")
    page.fill("#id_consent_at_1", f"{signed:%H:%M:%S}")
    page.select_option("#id_consent_source", label="Signed paper form")
    page.click("input[name=_continue]")
    assert "was added successfully" in message(page)
    assert "Not screened yet." in page.locator("#screening-history").inner_text()


def record_intake(page, *, pregnant: bool) -> None:  # noqa: ANN001
    """"Add intake" on the patient page: every yes/no question answered ("no" but for pregnancy), since a
    question left on "Not asked" keeps the screening from being clear; the skin type is on the patient record
    and the dates stay empty ("never")."""
    page.click(".object-tools a:text-is('Add intake')")
    page.wait_for_selector("text=New intake for Maya Okafor")
    answers = {fact.code: False for fact in FACTS if fact.type == FactType.BOOLEAN} | {"pregnant": pregnant}
    for code, yes in answers.items():
        page.check(f"input[name={code}][value={'yes' if yes else 'no'}]")
    page.click("input[value='Save intake']")
    assert message(page) == "Intake recorded."


def run_screening(page) -> None:  # noqa: ANN001
    """"Screen for protocol…": the microneedling protocol, planned for today, against the latest intake."""
    page.click(".object-tools a:text-is('Screen for protocol…')")
    page.select_option("#id_protocol_version", label=PROTOCOL)
    page.click("input[value='Run screening']")
    page.wait_for_selector("text=Outcome:")


def see_the_blocked_findings(page) -> None:  # noqa: ANN001
    assert page.locator("#content-main .outcome").first.inner_text() == "Blocked"
    assert colour(page, "#content-main .outcome") == BLOCKED_BADGE
    absolute = page.locator("li.finding-absolute")
    assert absolute.count() == 1
    assert colour(page, "li.finding-absolute", "borderLeftColor") == ABSOLUTE_BORDER
    text = absolute.inner_text()
    assert "Pregnancy: no safety data for exosome preparations. Do not apply exosomes." in text
    assert "Rule pregnancy-exosome · pregnant = yes" in text
    assert "elective resurfacing during pregnancy" in page.locator("li.finding-relative").inner_text()
    assert "a blocked screening cannot be overridden" in page.locator("p.errornote").inner_text()
    assert page.locator("input[value='Record override']").count() == 0
    assert page.locator("#record-treatment").count() == 0


def see_the_clear_screening(page) -> None:  # noqa: ANN001
    assert page.locator("#content-main .outcome").first.inner_text() == "Clear"
    assert colour(page, "#content-main .outcome") == CLEAR_BADGE
    assert "No contraindication found." in page.locator("#content-main").inner_text()


def record_treatment(page, *, started: dt.datetime, ended: dt.datetime) -> None:  # noqa: ANN001
    """"Record a treatment…" on the clear screening: times (on the clinic's clock), settings and the in-clinic
    exosome application."""
    page.click("#record-treatment")
    page.wait_for_selector("text=Recording a treatment for")
    chosen = page.locator("#id_screening option:checked").inner_text()
    assert PROTOCOL in chosen and chosen.endswith(": Clear"), chosen
    page.fill("#id_started_at", started.astimezone(LONDON).strftime("%Y-%m-%dT%H:%M"))
    page.fill("#id_ended_at", ended.astimezone(LONDON).strftime("%Y-%m-%dT%H:%M"))
    page.fill("#id_areas", "full face")
    page.fill("#id_device", "Dermapen 4")
    page.fill("#id_needle_depth_mm", "1.5")
    page.fill("#id_passes", "3")
    lots = page.locator("#id_applications-0-lot option").all_inner_texts()
    assert not any("EXPIRED" in lot for lot in lots), "an expired lot is never offered"
    page.select_option("#id_applications-0-lot", label=next(lot for lot in lots if LOT in lot))
    page.fill("#id_applications-0-volume_ml", "2")
    page.fill("#id_applications-0-minutes_after_procedure", "5")
    page.click("input[value='Record treatment']")
    page.wait_for_selector("#timeline")


def state_of(page, step: str) -> str:  # noqa: ANN001
    """The state shown on the timeline for the (first occurrence of the) step titled ``step``."""
    row = page.locator("#timeline tbody tr").filter(has=page.locator(f"strong:text-is('{step}')")).first
    return row.locator(".state").inner_text()


def see_the_timeline(page) -> None:  # noqa: ANN001
    assert re.fullmatch(r"Treatment recorded with 13 reminders\.", message(page))
    assert page.locator("#timeline h2").inner_text() == "Timeline (patient's time: Europe/London)"
    steps = " ".join(page.locator("#timeline tbody tr").all_inner_texts())
    for step in ("No retinoids, acids or exfoliation", "At-home exosome serum (#7)", "Self-check: redness and pain",
                 "One-week check-in", "Next session"):
        assert step in steps
    assert state_of(page, "In-clinic exosome application") == "Applied (recorded)"
    assert state_of(page, "Self-check: redness and pain") == "Upcoming"
    assert page.locator("#timeline tr[data-state=upcoming]").count() == 13
    assert page.locator(".readonly-inline").filter(has_text=LOT).count() == 1


def screenshot_of_the_timeline(page, name: str) -> None:  # noqa: ANN001
    """The lot applied and the whole timeline in one picture: a taller window, scrolled to the applications."""
    page.set_viewport_size({"width": 1280, "height": 1150})
    page.locator(".readonly-inline").last.evaluate("element => element.scrollIntoView()")
    screenshot(page, name, publish=True, full_page=False)
    page.set_viewport_size({"width": 1280, "height": 860})


def log_outcomes(page, *, day: int, erythema: int, oedema: int, pain: int, note: str, phase: str = "") -> None:  # noqa: ANN001
    """"Log outcomes…" on the treatment page: the add form comes with the treatment filled in."""
    page.click(".object-tools a:text-is('Log outcomes…')")
    page.wait_for_selector("text=Add outcome assessment")
    assert page.locator("#id_treatment").input_value() == str(Treatment.objects.get().pk)
    page.fill("#id_time_point_day", str(day))
    if phase:
        page.check(f"input[name=phase][value={phase}]")
    page.check(f"#id_erythema_{erythema + 1}")  # choice 0 is "not scored"
    page.check(f"#id_oedema_{oedema + 1}")
    page.fill("#id_pain", str(pain))
    page.fill("#id_notes", note)


def save_outcomes(page) -> None:  # noqa: ANN001
    page.click("input[name=_save]")
    assert "was added successfully" in message(page)


# --- three days later ----------------------------------------------------------------------------


def open_the_treatment(page) -> None:  # noqa: ANN001
    """Dashboard → Patients → the patient → "Treatments" → the treatment."""
    open_app_page(page, "Patients")
    page.click("#result_list a:text-is('Okafor')")
    page.wait_for_selector("#screening-history")
    outcomes = page.locator("#screening-history tbody .outcome").all_inner_texts()
    assert outcomes == ["Clear", "Blocked"], "every screening is kept, newest first"
    page.click(".object-tools a:text-is('Treatments')")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "Microneedling + exosome" in rows.first.inner_text()
    rows.first.locator("th a").click()
    page.wait_for_selector("#timeline")


def the_self_check_email(outbox: list) -> mail.EmailMessage:
    """The day-3 reminder that carries the "Report how my skin looks" link."""
    checks = [sent for sent in outbox if "Report how your skin looks" in sent.body]
    assert len(checks) == 1, [sent.subject for sent in outbox]
    assert checks[0].to == [PATIENT["email"]]
    return checks[0]


def report_on_the_phone(phone, email: mail.EmailMessage, url: str) -> None:  # noqa: ANN001
    """Maya opens the reminder on her phone, taps the link and answers: mild redness, pain 3, itch 2, serum used."""
    link = re.search(r"Report how your skin looks.*\n(\S+)", email.body).group(1)
    assert link.startswith(f"{url}/p/")
    html = next(content for content, kind in email.alternatives if kind == "text/html")
    phone.set_content(html)
    assert "Self-check: redness and pain" in phone.locator("body").inner_text()
    screenshot(phone, "reminder-email-phone", publish=True)
    phone.click("a:text-is('Report how my skin looks')")
    phone.wait_for_selector("text=How is your skin today?")
    assert phone.url == link
    assert "This is your day 3 check after your treatment on" in phone.locator("main").inner_text()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scrolling"
    phone.check("#id_erythema_2")
    phone.select_option("#id_pain", "3")
    phone.select_option("#id_pruritus", "2")
    phone.check("input[name=applied_as_instructed][value=yes]")
    screenshot(phone, "self-report-phone", publish=True)
    phone.click("button[type=submit]")
    phone.wait_for_selector("text=Thank you")
    assert "Your day 3 check has been sent to Harbour Skin Clinic." in phone.locator("main").inner_text()


def review_the_healing_chart(page) -> None:  # noqa: ANN001
    """Outcome assessments (her two entries and Maya's), then the patient's healing chart."""
    page.click("#site-name a")
    open_app_page(page, "Outcome assessments")
    assert sorted(page.locator("#result_list .field-time_point").all_inner_texts()) == ["Day 0 (after)", "Day 3", "Day 3"]
    assert sorted(page.locator("#result_list .field-source").all_inner_texts()) == ["Clinician", "Clinician", "Patient-reported"]
    page.locator("#result_list a:text-is('healing chart')").first.click()
    page.wait_for_selector("text=Healing of Maya Okafor")
    whole_area = page.locator(".treatment-healing tbody tr").first.inner_text().split("\t")
    assert whole_area[:4] == ["whole area", "3", "—", "3"]  # peak CEA 3; healed over by day 3
    chart = page.locator(".treatment-healing .chart img")
    page.wait_for_function("image => image.complete", arg=chart.element_handle())
    assert chart.evaluate("image => image.naturalWidth") > 0, "the healing chart renders"


# --- the auditor ---------------------------------------------------------------------------------


def export_outcome_csv(page) -> list[dict[str, str]]:  # noqa: ANN001
    """Exports → Add export: the outcome log as CSV, de-identified (the defaults); it downloads straight away."""
    open_app_page(page, "Exports")
    page.click(".object-tools a.addlink")
    page.wait_for_selector("text=New export")
    page.select_option("#id_clinic", label="Harbour Skin Clinic")
    assert page.locator("#id_kind option:checked").inner_text() == "Outcome log"
    page.select_option("#id_format", "csv")
    assert page.is_checked("input[name=identified][value=no]")
    with page.expect_download() as download:
        page.click("input[value=Export]")
    assert download.value.suggested_filename.endswith(".csv")
    return list(csv.DictReader(io.StringIO(download.value.path().read_text(encoding="utf-8-sig"))))


def see_the_export_on_record(page) -> None:  # noqa: ANN001
    """The export's own page: who, when, 3 rows, the file's SHA-256, and the manifest."""
    page.click(".breadcrumbs a:text-is('Exports')")
    row = page.locator("#result_list tbody tr").first
    assert "de-identified" in row.inner_text()
    row.locator("th a").click()
    page.wait_for_selector("text=Manifest")
    facts = page.locator(".export-facts").inner_text()
    assert "Outcome log, CSV" in facts and "Requested by\taudit_harbour" in facts and "Rows\t3" in facts
    assert page.locator("[data-status]").inner_text() == "Done"
    assert re.search(r"SHA-256\t[0-9a-f]{64}", facts)
    assert "This export was downloaded directly; no copy is kept." in page.locator(".export-actions").inner_text()


def check_the_csv(rows: list[dict[str, str]]) -> None:
    by_point = {(row["time_point_day"], row["source"]): row for row in rows}
    assert set(by_point) == {("0", "clinician"), ("3", "clinician"), ("3", "patient")}
    clinician = by_point["3", "clinician"]
    assert (clinician["erythema"], clinician["oedema"], clinician["pain"]) == ("2", "1", "2")
    assert clinician["reepithelialisation_complete"].lower() in ("true", "1")
    assert clinician["recorded_by"] == CLINICIAN
    patient = by_point["3", "patient"]
    assert (patient["erythema"], patient["pain"], patient["pruritus"]) == ("2", "3", "2")
    assert {row["lots"] for row in rows} == {LOT}
    assert {row["protocol"] for row in rows} == {"Microneedling + exosome"}
    assert len({row["patient"] for row in rows}) == 1
    identifying = (PATIENT["given"], PATIENT["family"], PATIENT["email"], PATIENT["born"])
    assert not any(value in cell for row in rows for cell in row.values() for value in identifying), "de-identified"


# --- the walk-through ------------------------------------------------------------------------------


def test_a_clinician_a_patient_and_an_auditor_walk_through_the_whole_flow(
    page, phone, second_desk, live_server, clinic, settings
):
    settings.SITE_URL = live_server.url  # the links in the emails point at this server
    url, secrets = live_server.url, {}
    day_0 = dt.datetime.combine(dt.datetime.now(LONDON).date(), dt.time(9, 30), tzinfo=LONDON)
    with time_machine.travel(day_0, tick=True) as clock:
        # Day 0, 09:30: screened, stopped by the pregnancy, intake corrected, screened clear, then treated.
        sign_in(page, url, CLINICIAN, secrets=secrets)
        create_patient(page)
        record_intake(page, pregnant=True)
        run_screening(page)
        see_the_blocked_findings(page)
        screenshot(page, "screening-blocked", publish=True)
        page.click("a:text-is('Back to Maya Okafor')")
        record_intake(page, pregnant=False)
        run_screening(page)
        see_the_clear_screening(page)
        # The procedure starts after the clear screening (a screening must precede treatment) and is recorded
        # once done. Under half an hour on, so the session (30 idle minutes) lasts; the clock is the one moved to
        # 09:30 in London, so the day is day 0 whatever the real time.
        started = dt.datetime.now(LONDON).replace(second=0, microsecond=0) + dt.timedelta(minutes=2)
        ended = started + dt.timedelta(minutes=20)
        clock.move_to(ended + dt.timedelta(minutes=3))
        record_treatment(page, started=started, ended=ended)
        see_the_timeline(page)
        screenshot(page, "treatment-recorded")
        log_outcomes(page, day=0, phase="after", erythema=3, oedema=2, pain=4, note="Uniform erythema right after.")
        save_outcomes(page)
        assert mail.outbox == [], "no reminder goes out before its time"

        # Day 3, 10:30: the beat dispatcher and worker have sent what fell due, the self-check among them.
        clock.move_to(day_0 + dt.timedelta(days=3, hours=1))
        assert send_due_inline() == 6
        page.goto(f"{url}/admin/")
        assert page.locator("#id_username").is_visible(), "the idle session has ended"
        sign_in(page, url, CLINICIAN, secrets=secrets)
        assert (metric(page, "outcomes_awaiting"), metric(page, "reminders_failed")) == ("1", "0")
        screenshot(page, "dashboard", publish=True)
        open_the_treatment(page)
        assert state_of(page, "Self-check: redness and pain") == "Sent"
        assert state_of(page, "Sunscreen from today") == "Sent"
        assert state_of(page, "One-week check-in") == "Upcoming"
        screenshot_of_the_timeline(page, "treatment-timeline")
        log_outcomes(page, day=3, erythema=2, oedema=1, pain=2, note="Even pink erythema, no crusting.")
        page.select_option("#id_reepithelialisation_complete", label="Yes")
        screenshot(page, "outcome-entry", publish=True)
        save_outcomes(page)
        page.click("#site-name a")
        assert metric(page, "outcomes_awaiting") == "0"

        # 10:40: Maya answers the self-check on her phone.
        clock.shift(dt.timedelta(minutes=10))
        report_on_the_phone(phone, the_self_check_email(mail.outbox), url)
        review_the_healing_chart(page)
        screenshot(page, "review", publish=True)

        # An auditor downloads the outcome log; the export is on record with its manifest.
        sign_in(second_desk, url, AUDITOR, secrets=secrets)
        rows = export_outcome_csv(second_desk)
        see_the_export_on_record(second_desk)
        screenshot(second_desk, "export", publish=True)

    check_the_csv(rows)
    assert OutcomeAssessment.objects.filter(source=OutcomeAssessment.Source.PATIENT, time_point_day=3).count() == 1
    assert Export.objects.get().row_count == 3
