"""The protocol editor warns about a step whose reminder the quiet hours push past the step, and still saves it."""

from __future__ import annotations

import datetime as dt
import html

import pytest

from protocols import versioning
from protocols.models import ProtocolVersion
from protocols.quiet_hours import SHARED_PROTOCOL_NOTE, version_warnings
from tests.factories import ProtocolFactory, StepFactory, VersionFactory
from tests.protocols.test_admin import _version_post

pytestmark = pytest.mark.django_db

EARLY_MORNING = (
    "Step “Cool compress”: its reminder would be due at 07:00, inside the quiet hours 21:00–08:00, so it goes out "
    "at 08:00: after the step at 07:00."
)


@pytest.fixture
def draft(clinic_a):
    version = versioning.create_protocol(clinic=clinic_a, name="Evening peel", procedure="microneedling")
    StepFactory(version=version, title="Cool compress", day=1, local_time=dt.time(9, 0))
    return version


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_it_warns_on_save_and_still_saves_the_step(client, clinician, draft):
    step = draft.steps.get()
    client.force_login(clinician)
    response = client.post(f"/admin/protocols/protocolversion/{draft.pk}/change/",
                           _version_post(draft, step_changes={step.pk: {"local_time": "07:00"}}), follow=True)
    assert EARLY_MORNING in _messages(response)
    step.refresh_from_db()
    assert step.local_time == dt.time(7, 0)


def test_it_says_nothing_when_no_reminder_is_late(client, clinician, draft):
    client.force_login(clinician)
    response = client.post(f"/admin/protocols/protocolversion/{draft.pk}/change/", _version_post(draft), follow=True)
    assert not [text for text in _messages(response) if "quiet hours" in text]
    page = client.get(f"/admin/protocols/protocolversion/{draft.pk}/change/").content.decode()
    assert "None: no reminder is pushed past its step by the quiet hours." in page


def test_the_version_page_names_the_procedure_end_times_in_the_clinics_quiet_hours(client, clinician, clinic_a, draft):
    type(clinic_a).objects.filter(pk=clinic_a.pk).update(quiet_hours_start=dt.time(22, 0), quiet_hours_end=dt.time(6, 0))
    StepFactory(version=draft, title="Check redness", timing="offset", day=None, local_time=None,
                offset_value=2, offset_unit="hours")
    client.force_login(clinician)
    body = client.get(f"/admin/protocols/protocolversion/{draft.pk}/change/").content.decode()
    assert '<li class="warning">Step “Check redness”: if the procedure ends between 20:00 and 04:00' in body
    assert "quiet hours 22:00–06:00 and goes out at 06:00, after the step." in body


def test_it_warns_again_when_the_version_is_published(client, clinician, draft):
    draft.steps.update(local_time=dt.time(7, 0))
    client.force_login(clinician)
    response = client.post(f"/admin/protocols/protocolversion/{draft.pk}/publish/", follow=True)
    draft.refresh_from_db()
    assert draft.status == ProtocolVersion.Status.PUBLISHED
    assert EARLY_MORNING in _messages(response)


def test_the_publish_confirmation_warns_before_publishing(client, clinician, draft):
    draft.steps.update(local_time=dt.time(7, 0))
    client.force_login(clinician)

    page = client.get(f"/admin/protocols/protocolversion/{draft.pk}/publish/").content.decode()

    assert f'<li class="warning">{html.escape(EARLY_MORNING)}</li>' in page
    draft.refresh_from_db()
    assert draft.status == ProtocolVersion.Status.DRAFT  # asked, not done


def test_a_shared_protocol_is_checked_against_the_default_quiet_hours_and_says_so():
    version = VersionFactory(protocol=ProtocolFactory(clinic=None), status=ProtocolVersion.Status.DRAFT)
    StepFactory(version=version, title="Cool compress", day=1, local_time=dt.time(7, 0))
    assert version_warnings(version) == [EARLY_MORNING + SHARED_PROTOCOL_NOTE]
