"""The patient's self-report page, opened from a signed link: first answers, corrections, bad input, photos,
a problem sent without answers, and the thank-you page a reload cannot send again."""

from __future__ import annotations

import datetime as dt
import io

import pytest
import time_machine
from django.core import mail
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from patients.links import create_link, token_for
from patients.models import OutcomeAssessment, OutcomePhoto, PatientLink, StaffAlert, Treatment
from patients.outcomes import record_assessment
from tests.factories import TreatmentFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 18, 0, tzinfo=dt.UTC)
GOOD = {"erythema": "2", "pain": "3", "pruritus": "1", "applied_as_instructed": "yes", "notes": ""}


@pytest.fixture(autouse=True)
def setup(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()  # the per-address rate limit of link pages
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def treatment(clinic_a, clinician):
    ended = NOW - dt.timedelta(days=3, hours=6)
    return TreatmentFactory(
        screening__patient__clinic=clinic_a, screening__patient__given_name="Robin",
        started_at=ended - dt.timedelta(hours=1), ended_at=ended,
    )


@pytest.fixture
def link(treatment):
    return create_link(patient=treatment.patient, purpose=PatientLink.Purpose.SELF_REPORT, treatment=treatment, time_point_day=3)


def _url(link):
    return reverse("patients:link", kwargs={"token": token_for(link)})


def _jpeg(size=(64, 48)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 110)).save(buffer, format="JPEG")
    return SimpleUploadedFile("skin.jpg", buffer.getvalue(), content_type="image/jpeg")


def test_it_shows_the_redness_words_with_plain_descriptions_on_a_mobile_page(client, link):
    response = client.get(_url(link))
    assert response.status_code == 200
    body = response.content.decode()
    assert "day 3 check" in body
    for word, text in [("Clear", "usual colour"), ("Almost clear", "faint pink"), ("Mild", "Light pink"),
                       ("Moderate", "like a sunburn"), ("Severe", "Deep, intense red")]:
        assert f"<strong>{word}</strong>" in body
        assert text in body
    assert "Did you apply the serum as instructed?" in body
    assert 'name="viewport"' in body
    assert "<script" not in body  # the CSP forbids inline scripts; the page needs none


def test_it_stores_the_answers_as_a_patient_reported_outcome(client, link, treatment):
    response = client.post(_url(link), GOOD, follow=True)
    assert response.status_code == 200
    assert "Thank you" in response.content.decode()
    report = OutcomeAssessment.objects.get()
    assert report.source == OutcomeAssessment.Source.PATIENT
    assert (report.treatment, report.time_point_day, report.arm) == (treatment, 3, None)
    assert (report.erythema, report.pain, report.pruritus, report.applied_as_instructed) == (2, 3, 1, True)
    assert report.recorded_by is None
    assert report.via_link == link
    assert report.recorded_at == NOW
    link.refresh_from_db()
    assert link.used_at == NOW


def test_a_second_visit_shows_the_first_answers_and_may_correct_them(client, link):
    client.post(_url(link), GOOD)
    again = client.get(_url(link)).content.decode()
    assert "You already sent this check" in again
    assert 'id="id_erythema_2" checked' in again

    response = client.post(_url(link), {**GOOD, "erythema": "1", "applied_as_instructed": "no"}, follow=True)

    assert response.status_code == 200
    assert "corrected" in response.content.decode()
    report = OutcomeAssessment.objects.get()  # still one report for the day
    assert (report.erythema, report.applied_as_instructed) == (1, False)
    first, latest = report.history.order_by("history_id")
    assert (first.erythema, first.applied_as_instructed) == (2, True)
    assert latest.history_change_reason == "Corrected by the patient through their link"


def test_another_link_for_the_same_day_corrects_the_same_report(client, link, treatment):
    client.post(_url(link), GOOD)
    resent = create_link(patient=treatment.patient, purpose="self_report", treatment=treatment, time_point_day=3)
    client.post(_url(resent), {**GOOD, "erythema": "0"})
    assert OutcomeAssessment.objects.get().erythema == 0


def test_the_pain_and_itch_questions_start_unanswered(client, link):
    # A select shows its first option: were that "0", a skipped question would be stored as "no pain".
    body = client.get(_url(link)).content.decode()
    for name in ("pain", "pruritus"):
        select = body[body.index(f'name="{name}"'):]
        first_option = select[select.index("<option"):select.index("</option>")]
        assert 'value=""' in first_option, first_option


@pytest.mark.parametrize(
    ("answers", "field_message"),
    [
        ({**GOOD, "erythema": "7"}, "Choose one of the five descriptions."),
        ({**GOOD, "pain": ""}, "Choose a number from 0 to 10."),
        ({**GOOD, "pruritus": ""}, "Choose a number from 0 to 10."),
        ({**GOOD, "pain": "11"}, "Choose a number from 0 to 10."),
        ({**GOOD, "pruritus": "-1"}, "Choose a number from 0 to 10."),
        ({k: v for k, v in GOOD.items() if k != "erythema"}, "Choose the description closest to how your skin looks."),
        ({**GOOD, "applied_as_instructed": "maybe"}, "Select a valid choice"),
    ],
)
def test_bad_answers_are_refused_with_a_clear_message_and_nothing_is_stored(client, link, answers, field_message):
    response = client.post(_url(link), answers)
    assert response.status_code == 400
    assert field_message in response.content.decode()
    assert "Nothing has been saved yet" in response.content.decode()
    assert not OutcomeAssessment.objects.exists()
    link.refresh_from_db()
    assert link.used_at is None


def test_a_photo_is_stored_privately_with_the_report(client, link, settings):
    response = client.post(_url(link), {**GOOD, "photo": _jpeg()})
    assert response.status_code == 302
    photo = OutcomePhoto.objects.get()
    assert photo.assessment == OutcomeAssessment.objects.get()
    assert photo.uploaded_by is None
    assert photo.content_type == "image/jpeg"
    assert (photo.width, photo.height) == (64, 48)
    assert "skin" not in photo.image.name  # the patient's file name is not kept
    assert (settings.MEDIA_ROOT / photo.image.name).exists()


def test_a_file_that_is_not_an_image_is_refused_and_nothing_is_stored(client, link):
    fake = SimpleUploadedFile("skin.jpg", b"%PDF-1.7 not a picture at all", content_type="image/jpeg")
    response = client.post(_url(link), {**GOOD, "photo": fake})
    assert response.status_code == 400
    assert "not a photo we can read" in response.content.decode()
    assert not OutcomeAssessment.objects.exists()
    assert not OutcomePhoto.objects.exists()


def test_a_50_mb_upload_is_refused_and_nothing_is_stored(client, link, settings):
    huge = SimpleUploadedFile("huge.jpg", b"\xff\xd8\xff" + b"\0" * (50 * 1024 * 1024), content_type="image/jpeg")
    response = client.post(_url(link), {**GOOD, "photo": huge})
    assert response.status_code == 400
    assert "the limit is 15.0 MB" in response.content.decode()
    assert not OutcomeAssessment.objects.exists()
    assert not (settings.MEDIA_ROOT / "photos").exists()


def test_flagging_a_problem_emails_the_clinicians(
    client, link, clinician, django_capture_on_commit_callbacks, alerts_sent_at_once
):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(_url(link), {**GOOD, "problem_flagged": "on", "notes": "Yellow crusts since this morning"})
    assert [m.to for m in mail.outbox] == [[clinician.email]]
    assert "flagged a problem" in mail.outbox[0].subject
    # It leads to the treatment's page, where the report is read and marked reviewed.
    assert f"/admin/patients/treatment/{link.treatment_id}/change/#patient-reports" in mail.outbox[0].body
    html, _ = mail.outbox[0].alternatives[0]
    assert "flagged a problem" in html
    with django_capture_on_commit_callbacks(execute=True):
        client.post(_url(link), {**GOOD, "problem_flagged": "on", "notes": "Still crusty"})
    assert len(mail.outbox) == 1  # already flagged: a correction does not email again


def test_an_expired_link_shows_a_friendly_page_and_changes_nothing(client, link):
    with time_machine.travel(link.expires_at + dt.timedelta(minutes=1), tick=False):
        response = client.post(_url(link), GOOD)
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert not OutcomeAssessment.objects.exists()


def test_a_tampered_token_shows_a_friendly_page(client, link):
    response = client.get(_url(link)[:-3] + "xyz/")
    assert response.status_code == 410
    assert "not valid" in response.content.decode()


def test_a_cancelled_treatment_needs_no_report(client, link, treatment):
    Treatment.objects.filter(pk=treatment.pk).update(status=Treatment.Status.CANCELLED)
    response = client.post(_url(link), GOOD)
    assert response.status_code == 410
    assert "cancelled" in response.content.decode()
    assert not OutcomeAssessment.objects.exists()


def test_a_patient_report_does_not_stop_the_clinician_scoring_the_same_day(client, link, treatment, clinician):
    client.post(_url(link), GOOD)
    record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    assert sorted(OutcomeAssessment.objects.values_list("source", "erythema")) == [("clinician", 3), ("patient", 2)]


# --- a problem without the ratings -------------------------------------------------------------------------------


def test_the_page_says_which_questions_are_required_and_when_they_are_not(client, link):
    body = client.get(_url(link)).content.decode()
    assert "Please answer the four questions." in body
    assert "the questions are then optional" in body


@pytest.mark.parametrize("notes", ["Yellow crusts since this morning", ""])
def test_a_problem_flagged_without_the_ratings_is_saved_and_the_clinicians_alerted(client, link, notes):
    response = client.post(_url(link), {"problem_flagged": "on", "notes": notes}, follow=True)
    assert response.status_code == 200
    assert "Your clinic's clinicians have been told" in response.content.decode()
    report = OutcomeAssessment.objects.get()
    assert (report.problem_flagged, report.notes) == (True, notes)
    assert (report.erythema, report.pain, report.pruritus, report.applied_as_instructed) == (None, None, None, None)
    alert = StaffAlert.objects.get()
    assert (alert.kind, alert.assessment) == (StaffAlert.Kind.PROBLEM_FLAG, report)


def test_a_problem_sent_without_answers_reopens_with_no_answer_chosen(client, link):
    client.post(_url(link), {"problem_flagged": "on", "notes": "Blisters"})
    body = client.get(_url(link)).content.decode()

    def tag(name, value=None):
        at = body.index(f'name="{name}"' + (f' value="{value}"' if value else ""))
        return body[body.rindex("<", 0, at):body.index(">", at)]

    assert "checked" in tag("problem_flagged")
    assert "checked" not in tag("applied_as_instructed", "unsure")  # the patient never said "not sure"


def test_without_a_flag_the_ratings_stay_required_even_with_a_description(client, link):
    response = client.post(_url(link), {"notes": "Just a bit warm"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Choose the description closest to how your skin looks." in body
    assert "Please answer yes, no or not sure." in body
    assert not OutcomeAssessment.objects.exists()


def test_a_submission_with_nothing_at_all_is_refused_with_a_clear_message(client, link):
    response = client.post(_url(link), {"erythema": "", "pain": "", "pruritus": "", "notes": ""})
    assert response.status_code == 400
    body = response.content.decode().replace("&quot;", '"')
    assert "You have not answered anything yet." in body
    assert 'tick "I have a problem I want the clinic to know about"' in body
    assert not OutcomeAssessment.objects.exists()
    assert not StaffAlert.objects.exists()
    link.refresh_from_db()
    assert link.used_at is None


# --- after sending: the thank-you page -----------------------------------------------------------------------------


def test_sending_redirects_to_a_thank_you_page_on_the_same_link(client, link):
    response = client.post(_url(link), GOOD)
    assert response.status_code == 302
    assert response["Location"] == _url(link) + "?sent=new"
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "Your day 3 check has been sent to" in page.content.decode()


def test_reloading_the_thank_you_page_writes_nothing_and_still_thanks(client, link):
    thanks = client.post(_url(link), {**GOOD, "problem_flagged": "on"})["Location"]
    report = OutcomeAssessment.objects.get()
    for _reload in range(2):
        body = client.get(thanks).content.decode()
        assert "Your day 3 check has been sent to" in body and "corrected" not in body
        assert "Your clinic's clinicians have been told" in body
    assert report.history.count() == 1
    assert StaffAlert.objects.count() == 1


def test_the_thank_you_address_before_anything_was_sent_shows_the_form(client, link):
    response = client.get(_url(link) + "?sent=new")
    assert response.status_code == 200
    assert "How is your skin today?" in response.content.decode()
    assert "Thank you" not in response.content.decode()


def test_the_thank_you_page_needs_the_token(client, link):
    client.post(_url(link), GOOD)
    assert client.get(_url(link)[:-3] + "xyz/?sent=new").status_code == 410


def test_the_same_answers_sent_again_write_no_history_and_are_not_called_a_correction(client, link):
    client.post(_url(link), GOOD)
    response = client.post(_url(link), GOOD, follow=True)
    body = response.content.decode()
    assert "corrected" not in body
    assert "already has these answers to your day 3 check; nothing has changed" in body
    assert OutcomeAssessment.objects.get().history.count() == 1


def test_the_same_answers_sent_again_do_not_reopen_a_reviewed_problem(client, link, clinician):
    from patients.outcomes import review_problem_flag

    client.post(_url(link), {**GOOD, "problem_flagged": "on", "notes": "Crusts"})
    review_problem_flag(assessment=OutcomeAssessment.objects.get(), by=clinician, note="Seen")
    client.post(_url(link), {**GOOD, "problem_flagged": "on", "notes": "Crusts"})
    report = OutcomeAssessment.objects.get()
    assert report.flag_reviewed_by == clinician
    assert StaffAlert.objects.count() == 1


def test_a_photo_added_to_the_same_answers_is_kept_and_said_so(client, link):
    client.post(_url(link), GOOD)
    response = client.post(_url(link), {**GOOD, "photo": _jpeg()}, follow=True)
    assert "Your photo has been added to your day 3 check" in response.content.decode()
    assert OutcomePhoto.objects.count() == 1
