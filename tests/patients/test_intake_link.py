"""The intake link: emailed, filled in on a phone once, and harmless when used, expired or tampered with."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse

from clinic.models import AuditEvent
from patients.intake import send_intake_link
from patients.models import Intake, PatientLink
from protocols.facts import FACTS, FactType
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=ZoneInfo("UTC"))


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def patient(clinic_a):
    return PatientFactory(clinic=clinic_a, given_name="Maya", email="maya@mail.example")


def answers(**overrides: str) -> dict[str, str]:
    data = {fact.code: ("no" if fact.type == FactType.BOOLEAN else "") for fact in FACTS}
    data.update(overrides)
    return data


def sent_path(patient, user) -> str:
    send_intake_link(patient=patient, sent_by=user)
    (message,) = mail.outbox
    return urlparse(re.search(r"https?://\S+/p/\S+/", message.body).group(0)).path


def test_it_emails_a_text_and_html_message_with_the_signed_link(patient, coordinator):
    send_intake_link(patient=patient, sent_by=coordinator)
    (message,) = mail.outbox
    assert message.to == ["maya@mail.example"]
    assert message.reply_to == [patient.clinic.contact_email]
    assert "Hello Maya" in message.body
    assert "/p/" in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    link = PatientLink.objects.get()
    assert link.purpose == "intake"
    assert link.opaque_id not in message.body  # only the signed token travels
    url = re.search(r"https?://\S+/p/\S+/", message.body).group(0)
    assert f'href="{url}"' in html
    assert AuditEvent.objects.filter(action="intake.link_sent", actor=coordinator).exists()


def test_a_patient_without_email_gets_no_link(clinic_a, coordinator):
    with pytest.raises(ValidationError):
        send_intake_link(patient=PatientFactory(clinic=clinic_a, email=""), sent_by=coordinator)
    assert not mail.outbox
    assert not PatientLink.objects.exists()


def test_the_patient_fills_in_the_form_once(client, patient, coordinator):
    path = sent_path(patient, coordinator)
    page = client.get(path)
    assert page.status_code == 200
    assert "Are you pregnant, or could you be?" in page.content.decode()
    assert '<meta name="viewport"' in page.content.decode()
    done = client.post(path, answers(pregnant="yes", isotretinoin_last_dose="2026-03-01"))
    assert done.status_code == 200
    assert "Thank you, Maya" in done.content.decode()
    intake = Intake.objects.get()
    assert intake.patient == patient
    assert intake.source == Intake.Source.PATIENT_LINK
    assert intake.answers["pregnant"] is True
    assert intake.answers["hsv_history"] is False
    assert intake.answers["isotretinoin_last_dose"] == "2026-03-01"
    assert intake.recorded_by is None
    assert PatientLink.objects.get().used_at == NOW


def test_a_used_link_shows_a_friendly_page_and_changes_nothing(client, patient, coordinator):
    path = sent_path(patient, coordinator)
    client.post(path, answers())
    again = client.get(path)
    assert again.status_code == 410
    assert "already been used" in again.content.decode()
    resubmitted = client.post(path, answers(pregnant="yes"))
    assert resubmitted.status_code == 410
    assert Intake.objects.count() == 1
    assert Intake.objects.get().answers["pregnant"] is False


def test_an_expired_link_shows_a_friendly_page_and_changes_nothing(client, patient, coordinator, frozen):
    path = sent_path(patient, coordinator)
    frozen.shift(dt.timedelta(days=15))
    response = client.post(path, answers())
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert patient.clinic.contact_email in response.content.decode()
    assert not Intake.objects.exists()
    assert PatientLink.objects.get().used_at is None


def test_a_tampered_link_shows_a_friendly_page_and_changes_nothing(client, patient, coordinator):
    path = sent_path(patient, coordinator)
    token = path.split("/")[2]
    tampered = reverse("patients:link", kwargs={"token": token[:-2] + ("AA" if token[-2:] != "AA" else "BB")})
    response = client.post(tampered, answers())
    assert response.status_code == 410
    assert "not valid" in response.content.decode()
    assert not Intake.objects.exists()
    assert PatientLink.objects.get().used_at is None


def test_bad_answers_show_errors_and_leave_the_link_usable(client, patient, coordinator):
    path = sent_path(patient, coordinator)
    response = client.post(path, answers(pregnant="", recent_peel_date="2026-12-01"))
    assert response.status_code == 400
    page = response.content.decode()
    assert "future" in page
    assert "errorlist" in page
    assert not Intake.objects.exists()
    assert PatientLink.objects.get().used_at is None
    assert client.post(path, answers()).status_code == 200
    assert Intake.objects.count() == 1


def test_the_page_has_no_inline_script(client, patient, coordinator):
    page = client.get(sent_path(patient, coordinator)).content.decode()
    assert "<script" not in page


def test_the_patient_reads_skin_types_with_their_descriptions(client, patient, coordinator):
    page = client.get(sent_path(patient, coordinator)).content.decode()
    assert "I — always burns, never tans" in page
    assert "VI — never burns" in page


def test_a_future_date_is_refused_in_the_patients_words(client, patient, coordinator):
    path = sent_path(patient, coordinator)
    response = client.post(path, answers(isotretinoin_last_dose="2026-06-01"))
    assert response.status_code == 400
    page = response.content.decode()
    assert "The date can&#x27;t be in the future." in page
    assert "the answer cannot be in the future" not in page  # the staff wording, naming the staff question
    assert not Intake.objects.exists()


def test_the_email_comes_from_the_clinics_sender_name(patient, coordinator, settings):
    settings.DEFAULT_FROM_EMAIL = "Aftercare <care@aftercare.example>"
    patient.clinic.sender_name = "Harbour Skin Clinic Team"
    patient.clinic.save()
    send_intake_link(patient=patient, sent_by=coordinator)
    assert mail.outbox[-1].from_email == "Harbour Skin Clinic Team <care@aftercare.example>"


class RefusingServer:
    """A mail backend whose server answers as ``error`` says."""

    error: Exception = OSError("[Errno 111] Connection refused")

    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise type(self).error


@pytest.mark.parametrize(("error", "advice"), [
    (OSError("[Errno 111] Connection refused"), "try again in a few minutes."),
    (__import__("smtplib").SMTPRecipientsRefused({"maya@mail.example": (550, b"5.1.1 No such user")}),
     "check the address, then try again."),
    (__import__("smtplib").SMTPSenderRefused(553, b"5.7.1 Sender rejected", "aftercare@localhost"),
     "check the mail settings (EMAIL_URL, DEFAULT_FROM_EMAIL), then resend. Nothing was sent."),
])
def test_a_link_the_mail_server_did_not_take_is_not_kept_and_staff_are_told_why(
    client, patient, coordinator, settings, error, advice
):
    settings.EMAIL_BACKEND = "tests.patients.test_intake_link.RefusingServer"
    RefusingServer.error = error
    client.force_login(coordinator)
    response = client.post(reverse("admin:patients_patient_send_intake_link", args=[patient.pk]), follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "The intake link could not be emailed to maya@mail.example: " in page
    assert advice in page
    assert not PatientLink.objects.exists()
    assert not AuditEvent.objects.filter(action="intake.link_sent").exists()


class NotesTheTransaction:
    """A mail backend that notes whether the database was inside a transaction while it talked to the server."""

    seen: list[bool] = []

    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        from django.db import connection

        type(self).seen.append(connection.in_atomic_block)
        return len(messages)


@pytest.mark.django_db(transaction=True)
def test_the_email_is_sent_outside_any_database_transaction(clinic_a, coordinator, settings):
    # A slow mail server must not hold SQLite's write lock (or PostgreSQL's row locks) for every other writer.
    settings.EMAIL_BACKEND = "tests.patients.test_intake_link.NotesTheTransaction"
    NotesTheTransaction.seen = []
    patient = PatientFactory(clinic=clinic_a, email="maya@mail.example")
    send_intake_link(patient=patient, sent_by=coordinator)
    assert NotesTheTransaction.seen == [False]
    assert PatientLink.objects.filter(patient=patient, purpose=PatientLink.Purpose.INTAKE).count() == 1
