"""Changing a clinic's settings is in the access log: one clinic.settings_changed entry per save, old → new."""

from __future__ import annotations

import pytest

from clinic.models import AuditEvent
from clinic.settings_changes import SETTINGS_ACTION
from tests.admin_forms import change_form_data

pytestmark = pytest.mark.django_db


def _save(client, clinic, **changes):  # noqa: ANN201 - the admin's response
    page = f"/admin/clinic/clinic/{clinic.pk}/change/"
    data = {**change_form_data(client.get(page)), **changes}
    if changes.get("require_two_factor") is False:
        del data["require_two_factor"]  # an unticked box is not posted
    response = client.post(page, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    return response


def test_it_logs_each_changed_setting_old_and_new_in_one_entry(client, clinic_admin, clinic_a):
    clinic_a.urgent_phone = ""
    clinic_a.save()
    before = (clinic_a.contact_email, clinic_a.sender_name, clinic_a.intake_max_age_days)
    client.force_login(clinic_admin)

    _save(client, clinic_a, time_zone="Europe/Berlin", quiet_hours_start="22:30", quiet_hours_end="07:00",
          urgent_phone="+44 20 7946 0000", intake_max_age_days="14", sender_name="Harbour Skin Aftercare",
          contact_email="care@harbour.example")

    event = AuditEvent.objects.get(action=SETTINGS_ACTION)
    assert (event.actor, event.clinic, event.object_id) == (clinic_admin, clinic_a, str(clinic_a.pk))
    assert event.detail == {
        "changed": ["contact_email", "urgent_phone", "sender_name", "time_zone", "quiet_hours_start",
                    "quiet_hours_end", "intake_max_age_days"],
        "contact_email": {"old": before[0], "new": "care@harbour.example"},
        "urgent_phone": {"old": "", "new": "+44 20 7946 0000"},
        "sender_name": {"old": before[1], "new": "Harbour Skin Aftercare"},
        "time_zone": {"old": "Europe/London", "new": "Europe/Berlin"},
        "quiet_hours_start": {"old": "21:00:00", "new": "22:30:00"},
        "quiet_hours_end": {"old": "08:00:00", "new": "07:00:00"},
        "intake_max_age_days": {"old": before[2], "new": 14},
    }


def test_a_save_that_changes_nothing_logs_nothing(client, clinic_admin, clinic_a):
    client.force_login(clinic_admin)

    _save(client, clinic_a)

    assert not AuditEvent.objects.filter(action=SETTINGS_ACTION).exists()


def test_two_factor_keeps_its_own_entry_and_is_not_logged_twice(client, clinic_admin, clinic_a):
    client.force_login(clinic_admin)

    _save(client, clinic_a, require_two_factor="on")

    assert AuditEvent.objects.filter(action="clinic.two_factor_changed").count() == 1
    assert not AuditEvent.objects.filter(action=SETTINGS_ACTION).exists()


def test_two_factor_and_a_setting_changed_together_make_one_entry_each(client, clinic_admin, clinic_a):
    client.force_login(clinic_admin)

    _save(client, clinic_a, require_two_factor="on", sender_name="Harbour Skin Aftercare")

    assert AuditEvent.objects.get(action="clinic.two_factor_changed").detail["require_two_factor"] is True
    assert AuditEvent.objects.get(action=SETTINGS_ACTION).detail["changed"] == ["sender_name"]


def test_the_access_log_shows_the_change(client, clinic_admin, clinic_a):
    client.force_login(clinic_admin)
    _save(client, clinic_a, time_zone="Europe/Berlin")

    page = client.get(f"/admin/clinic/auditevent/?action={SETTINGS_ACTION}").content.decode()

    assert "time zone: (old: Europe/London, new: Europe/Berlin)" in page
