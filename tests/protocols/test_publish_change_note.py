"""Publishing a version after the first asks for its change note on the confirmation, beside what changed."""

from __future__ import annotations

import pytest

from protocols import versioning
from protocols.defaults import install_example_protocols
from protocols.models import ProtocolVersion
from tests.factories import StepFactory

pytestmark = pytest.mark.django_db
Status = ProtocolVersion.Status


@pytest.fixture
def signed_in(client, clinician):
    client.force_login(clinician)
    return client


@pytest.fixture
def draft(clinic_a):
    published = install_example_protocols(clinic=clinic_a)["microneedling"]
    version = versioning.start_draft(protocol=published.protocol)
    ProtocolVersion.objects.filter(pk=version.pk).update(length_days=published.length_days + 7)
    version.refresh_from_db()
    return version


def _url(version: ProtocolVersion) -> str:
    return f"/admin/protocols/protocolversion/{version.pk}/publish/"


def test_the_confirmation_asks_for_the_note_and_says_what_changed(signed_in, draft):
    page = signed_in.get(_url(draft)).content.decode()
    assert 'name="change_note"' in page
    assert "Since v1: settings changed" in page
    before = draft.protocol.versions.get(number=1)
    assert f"/admin/protocols/protocol/{draft.protocol_id}/diff/?old={before.pk}&amp;new={draft.pk}" in page


def test_a_note_that_says_nothing_is_refused_on_the_same_page_and_kept_to_mend(signed_in, draft):
    response = signed_in.post(_url(draft), {"change_note": "ok"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Say what changed since v1 in the change note" in page
    assert ">ok</textarea>" in page
    draft.refresh_from_db()
    assert (draft.status, draft.change_note) == (Status.DRAFT, "")


def test_a_note_given_on_the_confirmation_publishes_the_version_with_it(signed_in, draft):
    response = signed_in.post(_url(draft), {"change_note": "The protocol runs a week longer."})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert (draft.status, draft.change_note) == (Status.PUBLISHED, "The protocol runs a week longer.")


def test_a_first_version_is_published_without_a_note(signed_in, clinic_a):
    first = versioning.create_protocol(clinic=clinic_a, name="New protocol", procedure="microneedling")
    StepFactory(version=first, title="Self-check", kind="outcome_check", day=3)
    assert 'name="change_note"' not in signed_in.get(_url(first)).content.decode()
    assert signed_in.post(_url(first)).status_code == 302
    first.refresh_from_db()
    assert first.status == Status.PUBLISHED


def test_a_refusal_about_the_steps_is_not_shown_as_the_notes_fault(signed_in, draft):
    ProtocolVersion.objects.filter(pk=draft.pk).update(length_days=draft.length_days - 7)  # the same as v1 again
    response = signed_in.post(_url(draft), {"change_note": "The protocol runs a week longer."}, follow=True)
    page = response.content.decode()
    assert "is the same as v1: there is nothing to publish" in page  # said on the version's page, to mend there
    assert response.redirect_chain[-1][0].endswith(f"/protocolversion/{draft.pk}/change/")


def test_the_api_names_the_change_note_field(clinician, draft):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(clinician)
    response = api.post(f"/api/v1/protocol-versions/{draft.pk}/publish/", {"change_note": "ok"}, format="json")
    assert response.status_code == 400
    assert response.json()["change_note"][0].startswith("Say what changed since v1 in the change note")
