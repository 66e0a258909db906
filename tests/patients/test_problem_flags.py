"""A problem a patient flags in a self-report surfaces in the admin until a clinician marks it reviewed.

The dashboard counts the open ones per clinic and links to their list; the
list and the treatment's page show what the patient wrote; "Mark reviewed"
records who and when (history and access log), once.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
import time_machine
from django.core import mail
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from PIL import Image

from clinic.models import AuditEvent
from patients.links import create_link, token_for
from patients.models import OutcomeAssessment, PatientLink
from patients.outcomes import record_self_report, review_problem_flag
from tests.factories import TreatmentFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 18, 0, tzinfo=dt.UTC)
WORDS = "Yellow crusts and fever since last night"
PROBLEM = {"erythema": "4", "pain": "8", "pruritus": "2", "applied_as_instructed": "yes", "problem_flagged": "on",
           "notes": WORDS}


@pytest.fixture(autouse=True)
def setup(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()
    with time_machine.travel(NOW, tick=False):
        yield


def _treatment(clinic, given_name="Robin"):
    ended = NOW - dt.timedelta(days=3, hours=6)
    return TreatmentFactory(
        screening__patient__clinic=clinic, screening__patient__given_name=given_name,
        started_at=ended - dt.timedelta(hours=1), ended_at=ended,
    )


def _link(treatment, day=3):
    return create_link(patient=treatment.patient, purpose=PatientLink.Purpose.SELF_REPORT, treatment=treatment,
                       time_point_day=day)


def _report(treatment, day=3, **answers):
    answers = {"erythema": 4, "pain": 8, "problem_flagged": True, "notes": WORDS, **answers}
    report, _created = record_self_report(link=_link(treatment, day), answers=answers)
    return report


def _jpeg():
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 110)).save(buffer, format="JPEG")
    return SimpleUploadedFile("skin.jpg", buffer.getvalue(), content_type="image/jpeg")


@pytest.fixture
def treatment(clinic_a):
    return _treatment(clinic_a)


@pytest.fixture
def flagged(client, treatment):
    """What the browser review did: the patient's page, severe redness, pain 8, their words, a photo, the box ticked."""
    url = reverse("patients:link", kwargs={"token": token_for(_link(treatment))})
    assert client.post(url, {**PROBLEM, "photo": _jpeg()}).status_code == 302
    return OutcomeAssessment.objects.get(treatment=treatment, source=OutcomeAssessment.Source.PATIENT)


def _changelist(query=""):
    return reverse("admin:patients_problemflag_changelist") + query


# --- the dashboard ----------------------------------------------------------------------------------


def test_the_dashboard_counts_unreviewed_problems_per_clinic_and_links_to_them(
    client, clinician, clinic_a, clinic_b, flagged, treatment
):
    _report(_treatment(clinic_a, "Sam"), notes="Blisters")
    reviewed = _report(_treatment(clinic_a, "Kim"))
    review_problem_flag(assessment=reviewed, by=clinician)
    _report(treatment, day=7, problem_flagged=False, notes="All fine")  # not flagged
    _report(_treatment(clinic_b))  # another clinic's
    client.force_login(clinician)
    body = client.get("/admin/").content.decode()
    cell = body.split('data-metric="problems_unreviewed">')[1].split("</td>")[0]
    assert cell.startswith(f'<a href="{_changelist()}?review=open&amp;clinic={clinic_a.pk}"')
    assert ">2</a>" in cell
    assert "Problems flagged by patients, not reviewed" in body


def test_the_dashboard_shows_zero_without_a_link_when_nothing_is_open(client, clinician, clinic_a):
    client.force_login(clinician)
    body = client.get("/admin/").content.decode()
    assert 'data-metric="problems_unreviewed">0</td>' in body


def test_the_dashboard_reads_the_problems_in_one_query_however_many_there_are(client, clinician, clinic_a):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/admin/").status_code == 200
        return len(captured.captured_queries)

    client.force_login(clinician)
    _report(_treatment(clinic_a))
    one = queries()
    for name in ("Sam", "Kim", "Lee"):
        _report(_treatment(clinic_a, name))
    assert queries() == one
    assert 'data-metric="problems_unreviewed"><a' in client.get("/admin/").content.decode()


# --- the list ---------------------------------------------------------------------------------------


def test_the_list_shows_what_the_patient_wrote_for_the_dashboards_clinic(
    client, clinician, clinic_a, clinic_b, flagged, treatment
):
    reviewed = _report(_treatment(clinic_a, "Kim"))
    review_problem_flag(assessment=reviewed, by=clinician)
    _report(treatment, day=7, problem_flagged=False, notes="All fine")
    _report(_treatment(clinic_b))
    client.force_login(clinician)
    response = client.get(_changelist(f"?review=open&clinic={clinic_a.pk}"))
    assert response.status_code == 200
    assert [r.pk for r in response.context["cl"].result_list] == [flagged.pk]
    body = response.content.decode()
    for shown in (treatment.patient.full_name, WORDS, "Day 3", "Severe redness · pain 8/10 · itch 2/10",
                  "20 Mar 2026 18:00", "Not reviewed", "photo 1", "Mark reviewed",
                  reverse("admin:patients_treatment_change", args=[treatment.pk]) + "#patient-reports"):
        assert shown in body
    everything = client.get(_changelist()).context["cl"].result_list
    assert sorted(r.pk for r in everything) == sorted([flagged.pk, reviewed.pk])  # flagged ones only, own clinic


def test_the_list_is_read_only_and_an_auditor_gets_no_review_action(client, auditor, flagged):
    client.force_login(auditor)
    response = client.get(_changelist())
    assert response.status_code == 200
    assert "Mark reviewed" not in response.content.decode()
    refused = client.post(_changelist(), {"action": "mark_reviewed", "_selected_action": [flagged.pk]})
    flagged.refresh_from_db()
    assert flagged.flag_reviewed_at is None
    assert refused.status_code in (200, 302)
    assert not AuditEvent.objects.filter(action="self_report.flag_reviewed").exists()


# --- marking reviewed -----------------------------------------------------------------------------------


def test_mark_reviewed_in_the_list_records_who_and_when_in_history_and_the_access_log(client, clinician, flagged):
    client.force_login(clinician)
    selected = {"action": "mark_reviewed", "_selected_action": [flagged.pk]}
    assert client.post(_changelist(), selected).status_code == 200  # the page asking for a note (test_problem_flag_bulk_review)
    response = client.post(_changelist(), {**selected, "note": "", "apply": "Mark reviewed"})
    assert response.status_code == 302
    flagged.refresh_from_db()
    assert (flagged.flag_reviewed_by, flagged.flag_reviewed_at) == (clinician, NOW)
    latest = flagged.history.order_by("-history_id").first()
    assert (latest.history_user, latest.history_change_reason) == (clinician, "Problem flagged by the patient reviewed")
    first = flagged.history.order_by("history_id").first()
    assert first.history_id != latest.history_id and first.flag_reviewed_at is None  # the unreviewed state is kept
    event = AuditEvent.objects.get(action="self_report.flag_reviewed")
    assert (event.actor, event.clinic_id, event.object_id) == (clinician, flagged.treatment.clinic_id, str(flagged.pk))
    assert client.get(_changelist("?review=open")).context["cl"].result_count == 0


def test_a_second_review_changes_nothing_and_keeps_the_first(clinician, coordinator, flagged):
    assert review_problem_flag(assessment=flagged, by=clinician, note="Called her; seen tomorrow 9:00") is True
    assert review_problem_flag(assessment=flagged, by=coordinator, note="Also looked") is False
    flagged.refresh_from_db()
    assert (flagged.flag_reviewed_by, flagged.flag_review_note) == (clinician, "Called her; seen tomorrow 9:00")
    assert AuditEvent.objects.filter(action="self_report.flag_reviewed").count() == 1
    assert flagged.history.count() == 2  # the report, then its one review


def test_staff_who_manage_reminders_may_review_but_an_auditor_may_not(coordinator, auditor, clinician_b, flagged):
    with pytest.raises(PermissionDenied):
        review_problem_flag(assessment=flagged, by=auditor)
    with pytest.raises(PermissionDenied):
        review_problem_flag(assessment=flagged, by=clinician_b)  # another clinic's clinician
    flagged.refresh_from_db()
    assert flagged.flag_reviewed_at is None
    assert review_problem_flag(assessment=flagged, by=coordinator) is True


def test_a_report_without_a_flag_cannot_be_reviewed(clinician, treatment):
    from django.core.exceptions import ValidationError

    fine = _report(treatment, problem_flagged=False, notes="All fine")
    with pytest.raises(ValidationError, match="no problem flagged"):
        review_problem_flag(assessment=fine, by=clinician)
    fine.refresh_from_db()
    assert fine.flag_reviewed_at is None


def test_a_patient_correction_that_keeps_the_flag_reopens_it_and_emails_again(
    clinician, flagged, django_capture_on_commit_callbacks, alerts_sent_at_once
):
    review_problem_flag(assessment=flagged, by=clinician, note="Antibiotics started")
    with django_capture_on_commit_callbacks(execute=True):
        record_self_report(link=_link(flagged.treatment), answers={"problem_flagged": True, "notes": "Worse today"})
    flagged.refresh_from_db()
    assert (flagged.flag_reviewed_at, flagged.flag_reviewed_by, flagged.flag_review_note) == (None, None, "")
    assert [m.to for m in mail.outbox] == [[clinician.email]]
    assert flagged.history.filter(flag_review_note="Antibiotics started").exists()  # the review is not lost


# --- the treatment's page -------------------------------------------------------------------------------------


def _page(client, treatment) -> str:
    response = client.get(reverse("admin:patients_treatment_change", args=[treatment.pk]))
    assert response.status_code == 200
    return response.content.decode().split('id="patient-reports"')[1]


def _review_url(report) -> str:
    return reverse("admin:patients_treatment_review_flag", args=[report.treatment_id, report.pk])


def test_the_treatment_page_lists_the_patients_reports_with_the_open_flag_and_its_button(
    client, clinician, flagged, treatment
):
    _report(treatment, day=7, erythema=1, pain=1, problem_flagged=False, notes="Much calmer")
    client.force_login(clinician)
    section = _page(client, treatment)
    assert section.index("Day 3") < section.index("Day 7")
    for shown in (WORDS, "4 — Severe", "8/10", "2/10", "Much calmer", "1 — Almost clear", "photo 1",
                  "Not reviewed", "flag-open", "csrfmiddlewaretoken", "Mark reviewed", _review_url(flagged)):
        assert shown in section
    assert section.count("Mark reviewed") == 1  # only the flagged report has one


def test_mark_reviewed_on_the_treatment_page_keeps_the_note_and_shows_who(client, clinician, flagged, treatment):
    clinician.first_name, clinician.last_name = "Ada", "Lane"
    clinician.save()
    client.force_login(clinician)
    response = client.post(_review_url(flagged), {"note": "Phoned: seen tomorrow 9:00"})
    assert response.status_code == 302
    assert response["Location"].endswith("#patient-reports")
    flagged.refresh_from_db()
    assert (flagged.flag_reviewed_by, flagged.flag_review_note) == (clinician, "Phoned: seen tomorrow 9:00")
    section = _page(client, treatment)
    assert "Reviewed by Ada Lane on 2026-03-20 18:00" in section  # London time, GMT in March
    assert "Phoned: seen tomorrow 9:00" in section
    assert "Mark reviewed" not in section
    again = client.post(_review_url(flagged), {"note": "double click"}, follow=True)
    assert "already" in again.content.decode()
    flagged.refresh_from_db()
    assert flagged.flag_review_note == "Phoned: seen tomorrow 9:00"
    assert AuditEvent.objects.filter(action="self_report.flag_reviewed").count() == 1


def test_an_auditor_sees_the_reports_but_may_not_review(client, auditor, flagged, treatment):
    client.force_login(auditor)
    section = _page(client, treatment)
    assert WORDS in section and "Not reviewed" in section
    assert "Mark reviewed" not in section
    assert client.post(_review_url(flagged), {"note": "x"}).status_code == 403
    flagged.refresh_from_db()
    assert flagged.flag_reviewed_at is None


def test_the_review_button_takes_only_a_post_and_only_this_clinics_reports(
    client, clinician, clinician_b, flagged
):
    client.force_login(clinician)
    assert client.get(_review_url(flagged)).status_code == 405
    client.force_login(clinician_b)
    assert client.post(_review_url(flagged)).status_code == 404
    flagged.refresh_from_db()
    assert flagged.flag_reviewed_at is None
