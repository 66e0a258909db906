"""A record's past version can be read, never saved back through its history page.

simple_history's "revert" saves the posted form having checked only that the
person may view the record: an auditor could rewrite a patient's email, a
coordinator switch off the clinic's two-factor requirement. Whatever the role,
the page is read-only and a POST changes nothing.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from tests.factories import PatientFactory, ProtocolFactory, VersionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class _FormValues(HTMLParser):
    """The values a browser would post from the page's change form, as shown."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self._in_form = False
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "form" and attributes.get("id", "").endswith("_form"):
            self._in_form = True
        name = attributes.get("name")
        if not self._in_form or not name and tag != "option":
            return
        if tag == "input" and attributes.get("type") not in ("submit", "button", "file"):
            if attributes.get("type") not in ("checkbox", "radio") or "checked" in attributes:
                self.data[name] = attributes.get("value", "on")
        elif tag == "select":
            self._select = name
            self.data.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in attributes:
            self.data[self._select] = attributes.get("value", "")
        elif tag == "textarea":
            self._textarea = name
            self.data[name] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self._in_form = False


def _post_past_version(client, url: str, drop: tuple[str, ...] = (), **changes: str):
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'value="Revert"' not in body  # nothing offers to save it back
    values = _FormValues()
    values.feed(body)
    assert values.data, "the page shows the version's values"
    data = {name: value for name, value in values.data.items() if name not in drop}
    return client.post(url, {**data, **changes})


@pytest.mark.parametrize("role", ["auditor", "coordinator", "clinician", "clinic_admin"])
def test_no_role_saves_a_patients_past_version(client, request, clinic_a, role):
    patient = PatientFactory(clinic=clinic_a, family_name="Original", email="original@mail.example")
    client.force_login(request.getfixturevalue(role))
    url = f"/admin/patients/patient/{patient.pk}/history/{patient.history.first().history_id}/"

    response = _post_past_version(client, url, family_name="Rewritten", email="attacker@evil.example")

    assert response.status_code == 403
    assert "A past version can be read, not saved back" in response.content.decode()
    patient.refresh_from_db()
    assert (patient.family_name, patient.email) == ("Original", "original@mail.example")
    assert patient.history.count() == 1


def test_a_coordinator_cannot_switch_off_two_factor_through_the_clinics_history(client, clinic_a, coordinator):
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    clinic_a.require_two_factor = True
    clinic_a.save()
    client.force_login(coordinator)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = TOTPDevice.objects.create(user=coordinator, name="phone", confirmed=True).persistent_id
    session.save()
    url = f"/admin/clinic/clinic/{clinic_a.pk}/history/{clinic_a.history.first().history_id}/"

    response = _post_past_version(client, url, drop=("require_two_factor",), contact_email="phish@evil.example")

    assert response.status_code == 403
    clinic_a.refresh_from_db()
    assert clinic_a.require_two_factor is True
    assert clinic_a.contact_email != "phish@evil.example"


def test_a_coordinator_cannot_rename_a_published_protocol_through_its_history(client, clinic_a, coordinator):
    protocol = ProtocolFactory(clinic=clinic_a, name="Real name")
    VersionFactory(protocol=protocol)
    client.force_login(coordinator)
    url = f"/admin/protocols/protocol/{protocol.pk}/history/{protocol.history.first().history_id}/"

    assert _post_past_version(client, url, name="Renamed").status_code == 403
    protocol.refresh_from_db()
    assert protocol.name == "Real name"


def test_records_without_a_history_of_their_own_show_the_admins_change_log(client, clinic_a, clinician, auditor):
    from clinic.audit import record_event
    from tests.factories import ReminderFactory

    reminder = ReminderFactory(treatment__screening__patient__clinic=clinic_a)
    client.force_login(clinician)
    page = client.get(f"/admin/patients/reminder/{reminder.pk}/history/")
    assert page.status_code == 200
    assert "Change history" in page.content.decode()

    event = record_event(actor=clinician, action="view", clinic=clinic_a, obj=reminder)
    client.force_login(auditor)
    assert client.get(f"/admin/clinic/auditevent/{event.pk}/history/").status_code == 200
