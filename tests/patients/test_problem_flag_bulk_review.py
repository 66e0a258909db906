""""Mark reviewed" on the list of problems patients flagged asks for a note first, as the treatment's page does.

The action answers with a page listing the selected problems and a note field;
its own "Mark reviewed" reviews each through ``review_problem_flag`` (history,
access log), with the same note.  The note is optional and at most 2,000
characters, the rule of the single review; a longer one is refused with a
message and nothing is reviewed.  Problems already reviewed are skipped and
said so; only those who may review a clinic's problems can.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.urls import reverse

from clinic.models import AuditEvent, Role
from patients.links import create_link
from patients.models import OutcomeAssessment, PatientLink
from patients.outcomes import record_self_report, review_problem_flag
from tests.factories import MembershipFactory, TreatmentFactory, staff

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 18, 0, tzinfo=dt.UTC)
NOTE = "Phoned both; seen tomorrow 9:00"
LIST = reverse("admin:patients_problemflag_changelist")


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with time_machine.travel(NOW, tick=False):
        yield


def flag(clinic, given_name: str, words: str) -> OutcomeAssessment:
    """A problem flagged by ``given_name`` on day 3 of a treatment at ``clinic``, in their ``words``."""
    ended = NOW - dt.timedelta(days=3, hours=6)
    treatment = TreatmentFactory(
        screening__patient__clinic=clinic, screening__patient__given_name=given_name,
        started_at=ended - dt.timedelta(hours=1), ended_at=ended,
    )
    link = create_link(patient=treatment.patient, purpose=PatientLink.Purpose.SELF_REPORT, treatment=treatment,
                       time_point_day=3)
    report, _created = record_self_report(link=link, answers={"erythema": 4, "problem_flagged": True, "notes": words})
    return report


@pytest.fixture
def robin(clinic_a):
    return flag(clinic_a, "Robin", "Yellow crusts and fever")


@pytest.fixture
def sam(clinic_a):
    return flag(clinic_a, "Sam", "Blisters on the cheek")


def selecting(*reports: OutcomeAssessment, **extra: str) -> dict:
    return {"action": "mark_reviewed", "_selected_action": [report.pk for report in reports], **extra}


def applying(*reports: OutcomeAssessment, note: str = NOTE) -> dict:
    return selecting(*reports, note=note, apply="Mark reviewed")


def reviews() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="self_report.flag_reviewed").order_by("id"))


def state(report: OutcomeAssessment) -> tuple:
    report.refresh_from_db()
    return report.flag_reviewed_at, report.flag_reviewed_by, report.flag_review_note


def test_it_first_shows_the_selected_problems_with_a_note_to_write_and_reviews_nothing(client, clinician, robin, sam):
    client.force_login(clinician)

    response = client.post(LIST, selecting(robin, sam))

    assert response.status_code == 200
    assert response.templates[0].name == "admin/patients/problemflag/mark_reviewed.html"
    body = response.content.decode()
    for shown in ("Mark 2 problems reviewed", robin.treatment.patient.full_name, "Yellow crusts and fever",
                  sam.treatment.patient.full_name, "Blisters on the cheek", 'name="note"', "Note (optional)",
                  'name="apply"', 'value="mark_reviewed"'):
        assert shown in body
    for report in (robin, sam):
        assert f'name="_selected_action" value="{report.pk}"' in body
    assert state(robin) == state(sam) == (None, None, "")
    assert reviews() == []


def test_it_reviews_each_problem_with_the_note_and_logs_each_review(client, clinician, robin, sam):
    client.force_login(clinician)

    response = client.post(LIST, applying(robin, sam, note=f"  {NOTE}\n"), follow=True)

    assert response.redirect_chain[0][1] == 302
    assert "2 problems marked reviewed with your note." in response.content.decode()
    assert state(robin) == state(sam) == (NOW, clinician, NOTE)
    logged = reviews()
    assert sorted((e.object_id, e.actor, e.clinic_id, e.detail["note"]) for e in logged) == [
        (str(robin.pk), clinician, robin.treatment.clinic_id, NOTE), (str(sam.pk), clinician, sam.treatment.clinic_id, NOTE),
    ]
    latest = robin.history.order_by("-history_id").first()
    assert (latest.history_user, latest.flag_review_note) == (clinician, NOTE)


def test_the_note_is_optional_as_when_reviewing_one_problem(client, coordinator, robin):
    client.force_login(coordinator)

    assert client.post(LIST, applying(robin, note="   ")).status_code == 302

    assert state(robin) == (NOW, coordinator, "")
    assert len(reviews()) == 1


def test_a_note_over_2000_characters_is_refused_with_a_message_and_nothing_is_reviewed(client, clinician, robin, sam):
    client.force_login(clinician)

    response = client.post(LIST, applying(robin, sam, note="x" * 2001))

    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was reviewed: correct the note below." in body
    assert "Keep the note to 2000 characters (it has 2001)." in body
    assert 'name="apply"' in body and body.count('name="_selected_action"') == 2  # the same problems, to try again
    assert state(robin) == state(sam) == (None, None, "")
    assert reviews() == []
    assert client.post(LIST, applying(robin, sam, note="x" * 2000)).status_code == 302  # the limit itself is fine
    assert state(robin)[2] == "x" * 2000


def test_problems_already_reviewed_are_skipped_and_said_so(client, clinician, coordinator, robin, sam):
    review_problem_flag(assessment=robin, by=coordinator, note="First look")
    client.force_login(clinician)

    page = client.post(LIST, selecting(robin, sam)).content.decode()
    assert "Mark 1 problem reviewed" in page
    assert "skipped, the first review stays" in page

    response = client.post(LIST, applying(robin, sam), follow=True)

    body = response.content.decode()
    assert "1 problem marked reviewed with your note." in body
    assert "1 had already been reviewed and were skipped; their first review stays." in body
    assert state(robin) == (NOW, coordinator, "First look")
    assert state(sam) == (NOW, clinician, NOTE)
    assert [e.object_id for e in reviews()] == [str(robin.pk), str(sam.pk)]  # the coordinator's, then this one


def test_a_problem_a_colleague_reviewed_meanwhile_is_counted_as_skipped_on_the_open_list(
    client, clinician, coordinator, robin, sam
):
    open_list = LIST + "?review=open"
    client.force_login(clinician)
    assert "Mark 2 problems reviewed" in client.post(open_list, selecting(robin, sam)).content.decode()
    review_problem_flag(assessment=sam, by=coordinator, note="Seen it")  # while the page was open

    body = client.post(open_list, applying(robin, sam), follow=True).content.decode()

    assert "1 problem marked reviewed with your note." in body
    assert "1 had already been reviewed and were skipped" in body
    assert state(sam) == (NOW, coordinator, "Seen it")


def test_an_auditor_may_neither_open_the_page_nor_review(client, auditor, robin):
    client.force_login(auditor)

    for data in (selecting(robin), applying(robin)):
        response = client.post(LIST, data)
        assert response.status_code in (200, 302)
        assert 'name="note"' not in response.content.decode()

    assert state(robin) == (None, None, "")
    assert reviews() == []


def test_another_clinics_problem_slipped_into_the_form_is_not_reviewed(client, clinician, clinic_b, robin):
    theirs = flag(clinic_b, "Kim", "Swollen eyelids")
    client.force_login(clinician)

    assert client.post(LIST, selecting(theirs)).status_code == 302  # nothing of theirs is listed to confirm
    assert client.post(LIST, applying(robin, theirs)).status_code == 302

    assert state(theirs) == (None, None, "")
    assert state(robin)[1] == clinician
    assert [e.object_id for e in reviews()] == [str(robin.pk)]


def test_a_clinic_where_the_reviewer_is_only_an_auditor_is_skipped_with_a_warning(client, clinic_a, clinic_b, robin):
    reviewer = staff(Role.CLINICIAN, clinic_a, username="clinician_and_auditor")
    MembershipFactory(user=reviewer, clinic=clinic_b, role=Role.AUDITOR)
    theirs = flag(clinic_b, "Kim", "Swollen eyelids")
    client.force_login(reviewer)

    page = client.post(LIST, selecting(robin, theirs)).content.decode()
    assert "Mark 1 problem reviewed" in page
    assert f"Skipped: your role in {clinic_b.name} may not review problems" in page

    body = client.post(LIST, applying(robin, theirs), follow=True).content.decode()

    assert "1 problem marked reviewed with your note." in body
    assert "Only clinicians and staff who manage reminders in this clinic may review" in body
    assert state(theirs) == (None, None, "")
    assert state(robin)[1] == reviewer
