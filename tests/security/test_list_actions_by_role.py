"""A list page offers only the actions the person's role may run: an auditor, who reads, is offered none."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail
from django.test import RequestFactory

from clinic.admin_base import ClinicScopedAdmin
from clinic.models import AuditEvent, Role
from tests.factories import MembershipFactory, PatientFactory

pytestmark = pytest.mark.django_db

PATIENTS = "/admin/patients/patient/"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _send_intake_links(client, *patients):
    return client.post(PATIENTS, {"action": "send_intake_links", ACTION_CHECKBOX_NAME: [p.pk for p in patients]})


def test_an_auditor_is_not_offered_send_intake_link(client, auditor, clinic_a):
    PatientFactory(clinic=clinic_a)
    client.force_login(auditor)
    response = client.get(PATIENTS)
    assert response.status_code == 200
    assert response.context["action_form"] is None
    assert "Send intake link by email" not in response.content.decode()


def test_an_auditor_posting_the_action_anyway_sends_nothing(client, auditor, clinic_a):
    patient = PatientFactory(clinic=clinic_a, email="maya@mail.example")
    client.force_login(auditor)
    response = _send_intake_links(client, patient)
    assert response.status_code in (200, 302)  # Django's "No action selected", not a 403 page
    assert mail.outbox == []
    assert not AuditEvent.objects.filter(action="intake.link_sent").exists()


def test_a_coordinator_is_offered_it_and_sends_the_links(client, coordinator, clinic_a):
    patient = PatientFactory(clinic=clinic_a, email="maya@mail.example")
    client.force_login(coordinator)
    assert "Send intake link by email" in client.get(PATIENTS).content.decode()
    response = _send_intake_links(client, patient)
    assert response.status_code == 302
    assert [message.to for message in mail.outbox] == [["maya@mail.example"]]


def test_someone_who_only_reads_one_of_their_clinics_sends_to_the_other_and_is_told(client, coordinator, clinic_a,
                                                                                     clinic_b):
    MembershipFactory(user=coordinator, clinic=clinic_b, role=Role.AUDITOR)
    here = PatientFactory(clinic=clinic_a, email="here@mail.example")
    there = PatientFactory(clinic=clinic_b, email="there@mail.example")
    client.force_login(coordinator)
    response = _send_intake_links(client, here, there)
    assert response.status_code == 302
    assert [message.to for message in mail.outbox] == [["here@mail.example"]]
    shown = [str(message) for message in client.get(PATIENTS).context["messages"]]
    assert "1 patient is in a clinic where your role does not send intake links; none was sent to them." in shown
    assert "Intake link sent to 1 patient." in shown


def test_an_auditor_is_offered_no_action_on_any_list(auditor):
    request = RequestFactory().get("/admin/")
    request.user = auditor
    offered = {
        model._meta.label: list(model_admin.get_actions(request))
        for model, model_admin in admin.site._registry.items()
        if isinstance(model_admin, ClinicScopedAdmin)
    }
    assert {label: actions for label, actions in offered.items() if actions} == {}
