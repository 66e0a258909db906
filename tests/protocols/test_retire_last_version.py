"""Retiring a protocol's only published version takes the procedure out of service: the confirmation says so; and
the publish and retire pages of a version that cannot be published or retired offer no button, only a way back."""

from __future__ import annotations

import html

import pytest

from protocols import versioning
from protocols.defaults import install_example_protocols
from protocols.models import ProtocolVersion
from tests.factories import PatientFactory, ScreeningFactory, StepFactory

pytestmark = pytest.mark.django_db
Status = ProtocolVersion.Status


@pytest.fixture
def published(clinic_a) -> ProtocolVersion:
    return install_example_protocols(clinic=clinic_a)["microneedling"]


@pytest.fixture
def signed_in(client, clinician):
    client.force_login(clinician)
    return client


def url(version: ProtocolVersion, action: str) -> str:
    return f"/admin/protocols/protocolversion/{version.pk}/{action}/"


def out_of_service(version: ProtocolVersion) -> str:
    return (f"{version.protocol.name} will have no published version: no patient can be screened or treated for it "
            "until you publish one.")


def test_retiring_the_only_published_version_says_the_procedure_goes_out_of_service(signed_in, published, clinic_a):
    ScreeningFactory(patient=PatientFactory(clinic=clinic_a), protocol_version=published)

    page = signed_in.get(url(published, "retire")).content.decode()

    assert html.escape(out_of_service(published)) in page
    assert "1 screening run for" in page  # the stranded screenings are still counted
    assert 'value="Retire"' in page


def test_the_warning_names_a_draft_waiting_to_be_published(signed_in, published):
    draft = versioning.start_draft(protocol=published.protocol)

    page = signed_in.get(url(published, "retire")).content.decode()

    assert html.escape(out_of_service(published) + f" Its draft v{draft.number} is not published yet.") in page


def test_no_warning_while_another_version_stays_published(signed_in, published):
    other = versioning.start_draft(protocol=published.protocol)
    # Two published at once: as rows published before publishing retired the previous version may be.
    ProtocolVersion.objects.filter(pk=other.pk).update(status=Status.PUBLISHED)

    page = signed_in.get(url(published, "retire")).content.decode()

    assert "will have no published version" not in page


def test_retiring_it_warns_again_once_done(signed_in, published):
    response = signed_in.post(url(published, "retire"), follow=True)

    page = response.content.decode()
    assert "is retired; treatments that used it keep it." in page
    assert html.escape(out_of_service(published)) in page
    published.refresh_from_db()
    assert published.status == Status.RETIRED


def test_the_publish_page_of_a_published_version_says_so_and_offers_no_button(signed_in, published):
    page = signed_in.get(url(published, "publish")).content.decode()

    assert f"{published} is published already" in page
    assert 'type="submit"' not in page.split('id="content-main"', 1)[1]
    assert f'href="/admin/protocols/protocolversion/{published.pk}/change/"' in page


def test_the_publish_page_of_a_retired_version_says_it_is_retired(signed_in, published):
    versioning.retire(version=published)

    page = signed_in.get(url(published, "publish")).content.decode()

    assert "is retired; only a draft can be published" in page
    assert 'value="Publish"' not in page


def test_the_retire_page_of_a_draft_offers_no_button(signed_in, clinic_a):
    draft = versioning.create_protocol(clinic=clinic_a, name="Draft protocol", procedure="microneedling")
    StepFactory(version=draft, title="Self-check", kind="outcome_check", day=3)

    page = signed_in.get(url(draft, "retire")).content.decode()

    assert "is draft; only a published version can be retired." in page
    assert 'value="Retire"' not in page
