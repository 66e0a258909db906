"""Intake links staff can keep track of: one working link at a time, shown on the patient's page, and not sent
twice by a double click."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlparse

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic.models import AuditEvent
from patients.intake import RECENT_INTAKE_LINK, intake_links_sent, send_intake_link
from patients.models import Intake, PatientLink
from protocols.facts import FACTS, FactType
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 4, 13, 2, tzinfo=dt.UTC)  # 14:02 in London, the clinic's zone


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


def send(patient, user, **kwargs) -> str:
    """Send a link and return the path of the one just emailed."""
    send_intake_link(patient=patient, sent_by=user, **kwargs)
    return urlparse(re.search(r"https?://\S+/p/\S+/", mail.outbox[-1].body).group(0)).path


def send_page(client, patient, **data):
    return client.post(reverse("admin:patients_patient_send_intake_link", args=[patient.pk]), data)


# --- one working link at a time ---------------------------------------------------------------------


def test_a_new_link_stops_the_one_sent_before(client, patient, coordinator, frozen):
    old = send(patient, coordinator)
    frozen.shift(dt.timedelta(hours=1))
    new = send(patient, coordinator)

    response = client.post(old, answers(pregnant="yes"))
    assert response.status_code == 410
    page = response.content.decode()
    assert "This link is no longer valid" in page
    assert "most recent email" in page
    assert client.get(old).status_code == 410
    assert not Intake.objects.exists()
    assert client.post(new, answers()).status_code == 200
    assert Intake.objects.count() == 1


def test_answering_through_one_link_stops_the_others(client, patient, coordinator, frozen):
    first = send(patient, coordinator)
    frozen.shift(dt.timedelta(hours=1))
    second = send(patient, coordinator)
    # Both open at once, as links sent before a new one stopped the old ones are.
    PatientLink.objects.update(superseded_at=None)

    assert client.post(second, answers(pregnant="no")).status_code == 200

    response = client.post(first, answers(pregnant="yes"))
    assert response.status_code == 410
    assert "no longer valid" in response.content.decode()
    assert Intake.objects.get().answers["pregnant"] is False


def test_a_link_that_could_not_be_emailed_leaves_the_earlier_one_working(client, patient, coordinator, settings,
                                                                          frozen):
    old = send(patient, coordinator)
    frozen.shift(dt.timedelta(hours=1))
    settings.EMAIL_BACKEND = "tests.patients.test_intake_link.RefusingServer"
    with pytest.raises(ValidationError):
        send_intake_link(patient=patient, sent_by=coordinator)
    assert client.post(old, answers()).status_code == 200


def test_the_used_page_still_says_already_answered(client, patient, coordinator):
    path = send(patient, coordinator)
    client.post(path, answers())
    page = client.get(path).content.decode()
    assert "already been used" in page
    assert "no longer valid" not in page


# --- the patient's page --------------------------------------------------------------------------------


def test_the_patients_page_says_a_link_is_outstanding_and_who_sent_it(client, patient, coordinator):
    send(patient, coordinator)
    client.force_login(coordinator)
    page = client.get(reverse("admin:patients_patient_change", args=[patient.pk])).content.decode()
    assert "Intake link sent on 2026-05-04 14:02 by coordinator_a" in page
    assert "not answered yet</strong> (expires 2026-05-18 14:02)" in page


def test_the_patients_page_says_when_a_link_was_answered_or_replaced(client, patient, coordinator, frozen):
    old = send(patient, coordinator)
    frozen.shift(dt.timedelta(hours=1))
    new = send(patient, coordinator)
    frozen.shift(dt.timedelta(hours=1))
    client.post(new, answers())
    assert client.get(old).status_code == 410
    client.force_login(coordinator)
    page = client.get(reverse("admin:patients_patient_change", args=[patient.pk])).content.decode()
    assert "answered on 2026-05-04 16:02" in page
    assert "not answered; it stopped working on 2026-05-04 15:02" in page
    assert "not answered yet" not in page


def test_the_page_reads_the_links_in_as_many_queries_for_three_as_for_one(client, patient, coordinator, frozen):
    client.force_login(coordinator)
    url = reverse("admin:patients_patient_change", args=[patient.pk])
    counts = []
    for _ in range(2):
        send(patient, coordinator, even_if_recent=True)
        client.get(url)  # warm whatever is read once per process
        with CaptureQueriesContext(connection) as captured:
            client.get(url)
        counts.append(len(captured.captured_queries))
        send(patient, coordinator, even_if_recent=True)
    assert counts[0] == counts[1]
    assert len(intake_links_sent(patient)) == 4


# --- not sent twice unseen --------------------------------------------------------------------------------


def test_a_second_click_within_minutes_asks_before_sending_again(client, patient, coordinator, frozen):
    client.force_login(coordinator)
    assert send_page(client, patient).status_code == 302
    frozen.shift(dt.timedelta(minutes=3))

    response = send_page(client, patient)

    assert response.status_code == 409
    page = response.content.decode()
    assert "An intake link was sent to maya@mail.example at 14:02; it still works. Send another anyway?" in page
    assert 'name="send_anyway" value="1"' in page
    assert len(mail.outbox) == 1
    assert PatientLink.objects.count() == 1

    confirmed = send_page(client, patient, send_anyway="1")
    assert confirmed.status_code == 302
    assert len(mail.outbox) == 2
    assert PatientLink.objects.filter(superseded_at__isnull=True).count() == 1


def test_after_ten_minutes_or_once_answered_it_sends_without_asking(client, patient, coordinator, frozen):
    path = send(patient, coordinator)
    frozen.shift(dt.timedelta(minutes=11))
    send(patient, coordinator)
    frozen.shift(dt.timedelta(minutes=1))
    client.post(urlparse(re.search(r"https?://\S+/p/\S+/", mail.outbox[-1].body).group(0)).path, answers())
    send(patient, coordinator)
    assert len(mail.outbox) == 3
    assert client.get(path).status_code == 410


def test_the_service_refuses_a_recent_link_with_its_code(patient, coordinator):
    send(patient, coordinator)
    with pytest.raises(ValidationError) as raised:
        send_intake_link(patient=patient, sent_by=coordinator)
    assert raised.value.code == RECENT_INTAKE_LINK
    assert AuditEvent.objects.filter(action="intake.link_sent").count() == 1


def test_the_list_action_skips_a_patient_sent_a_link_minutes_ago(client, patient, coordinator):
    send(patient, coordinator)
    client.force_login(coordinator)
    response = client.post(reverse("admin:patients_patient_changelist"),
                           {"action": "send_intake_links", "_selected_action": [patient.pk]}, follow=True)
    assert "it still works. None was sent again" in response.content.decode()
    assert len(mail.outbox) == 1
