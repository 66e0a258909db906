"""Admin pages of the protocols app: what a clinician sees and may do, and what another clinic never sees."""

from __future__ import annotations

import datetime as dt
import html
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from clinic.models import AuditEvent, Role
from patients.models import ExosomeApplication
from protocols import versioning
from protocols.defaults import install_default_rules, install_example_products, install_example_protocols
from protocols.models import ContraindicationRule, ProductLot, Protocol, ProtocolStep, ProtocolVersion
from tests.factories import (
    LotFactory,
    MembershipFactory,
    PatientFactory,
    ProductFactory,
    ScreeningFactory,
    StepFactory,
    TreatmentFactory,
    UserFactory,
    staff,
)

pytestmark = pytest.mark.django_db
Status = ProtocolVersion.Status
STEP_FIELDS = [
    "order", "kind", "title", "patient_text", "staff_notes", "timing", "offset_value", "offset_unit", "day",
    "local_time", "repeat_count", "repeat_every_days", "avoid_until_day", "product", "sends_reminder",
    "remind_minutes_before",
]


@pytest.fixture
def versions(clinic_a):
    return install_example_protocols(clinic=clinic_a)


@pytest.fixture
def published(versions):
    return versions["microneedling"]


@pytest.fixture
def draft(clinic_a):
    version = versioning.create_protocol(clinic=clinic_a, name="Draft protocol", procedure="microneedling")
    StepFactory(version=version, title="Self-check", kind="outcome_check", day=3)
    return version


@pytest.fixture
def signed_in(client, clinician):
    client.force_login(clinician)
    return client


def _hidden(response) -> bool:
    """The admin answers a row outside the user's clinics as if it did not exist (404, or a redirect home)."""
    return response.status_code == 404 or (response.status_code == 302 and response["Location"] == "/admin/")


def _version_post(version: ProtocolVersion, *, step_changes: dict | None = None, **fields) -> dict:
    """The POST body of the version change form, with its steps inline (edited by ``step_changes``)."""
    data = {"change_note": version.change_note, "length_days": version.length_days, **fields}
    steps = list(version.steps.order_by("order", "id"))
    data.update({"steps-TOTAL_FORMS": len(steps), "steps-INITIAL_FORMS": len(steps),
                 "steps-MIN_NUM_FORMS": 0, "steps-MAX_NUM_FORMS": 1000})
    for index, step in enumerate(steps):
        values = {name: getattr(step, ProtocolStep._meta.get_field(name).attname) for name in STEP_FIELDS}
        values.update((step_changes or {}).get(step.pk, {}))
        data[f"steps-{index}-id"] = step.pk
        data[f"steps-{index}-version"] = version.pk
        for name, value in values.items():
            if isinstance(value, bool):
                if value:
                    data[f"steps-{index}-{name}"] = "on"
            elif value is not None:
                data[f"steps-{index}-{name}"] = value.strftime("%H:%M") if isinstance(value, dt.time) else value
    return data


# --- protocols and versions -------------------------------------------------------------------------


def test_it_lists_the_clinics_protocols_and_not_another_clinics(signed_in, versions, clinic_b):
    install_example_protocols(clinic=clinic_b)
    Protocol.objects.filter(clinic=clinic_b).update(name="Summit only")
    body = signed_in.get("/admin/protocols/protocol/").content.decode()
    assert "Microneedling + exosome" in body
    assert "Summit only" not in body


def test_it_shows_versions_and_the_timeline_on_the_protocol_page(signed_in, published):
    body = signed_in.get(f"/admin/protocols/protocol/{published.protocol_id}/change/").content.decode()
    assert 'data-version="1" data-status="published"' in body
    assert f"/staff/protocol-versions/{published.pk}/timeline.svg" in body
    assert "Create new draft version" in body


def test_it_shows_a_published_version_read_only_with_a_new_draft_button(signed_in, published):
    response = signed_in.get(f"/admin/protocols/protocolversion/{published.pk}/change/")
    body = response.content.decode()
    assert response.status_code == 200
    assert 'name="length_days"' not in body
    assert 'name="steps-0-title"' not in body
    assert "cannot change" in body
    assert f"/admin/protocols/protocolversion/{published.pk}/new-draft/" in body
    assert "At-home exosome serum" in body


def test_it_refuses_to_save_a_published_version_in_the_admin(signed_in, published):
    serum = published.steps.get(title="At-home exosome serum")
    data = _version_post(published, step_changes={serum.pk: {"repeat_count": 3}}, length_days=30)
    response = signed_in.post(f"/admin/protocols/protocolversion/{published.pk}/change/", data)
    assert response.status_code == 403
    published.refresh_from_db()
    serum.refresh_from_db()
    assert (published.length_days, serum.repeat_count) == (42, 7)


def test_it_saves_a_draft_step_edited_inline(signed_in, draft):
    step = draft.steps.get()
    data = _version_post(draft, step_changes={step.pk: {"day": 5, "local_time": "09:30"}})
    response = signed_in.post(f"/admin/protocols/protocolversion/{draft.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    step.refresh_from_db()
    assert (step.day, step.local_time) == (5, dt.time(9, 30))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"repeat_count": 60, "repeat_every_days": 1}, "after the protocol ends on day 42"),
        ({"repeat_count": 3, "repeat_every_days": ""}, "at least 1 day"),
        ({"local_time": "24:30"}, "Enter a valid time."),
        ({"avoid_until_day": 5}, "Only avoidance steps"),
        ({"kind": "avoidance"}, "An avoidance needs an end"),
        ({"kind": "avoidance", "avoid_until_day": 3}, "so it cannot also end then"),
        ({"timing": "offset"}, "needs an offset"),
    ],
)
def test_it_shows_the_step_error_and_saves_nothing(signed_in, draft, change, message):
    step = draft.steps.get()
    response = signed_in.post(f"/admin/protocols/protocolversion/{draft.pk}/change/",
                              _version_post(draft, step_changes={step.pk: change}))
    assert response.status_code == 200
    assert message in response.content.decode()
    step.refresh_from_db()
    assert (step.day, step.repeat_count, step.timing) == (3, 1, "local_time")


def test_it_refuses_a_shorter_protocol_that_cuts_off_a_step(signed_in, draft):
    response = signed_in.post(f"/admin/protocols/protocolversion/{draft.pk}/change/", _version_post(draft, length_days=2))
    assert response.status_code == 200
    assert "after the protocol ends on day 2" in response.content.decode()
    draft.refresh_from_db()
    assert draft.length_days == 42


def test_it_starts_a_new_draft_after_confirming(signed_in, published):
    url = f"/admin/protocols/protocolversion/{published.pk}/new-draft/"
    assert "Create a new draft from v1?" in signed_in.get(url).content.decode()
    assert published.protocol.versions.count() == 1
    response = signed_in.post(url)
    draft = published.protocol.versions.get(status=Status.DRAFT)
    assert response["Location"] == f"/admin/protocols/protocolversion/{draft.pk}/change/"
    assert draft.steps.count() == published.steps.count()
    body = signed_in.get(response["Location"]).content.decode()
    assert 'name="steps-0-title"' in body
    assert f"/admin/protocols/protocolversion/{draft.pk}/publish/" in body


def test_it_publishes_and_retires_with_the_buttons(signed_in, draft):
    assert signed_in.post(f"/admin/protocols/protocolversion/{draft.pk}/publish/").status_code == 302
    draft.refresh_from_db()
    assert draft.status == Status.PUBLISHED
    assert signed_in.post(f"/admin/protocols/protocolversion/{draft.pk}/retire/").status_code == 302
    draft.refresh_from_db()
    assert draft.status == Status.RETIRED


def test_publishing_and_retiring_say_how_many_screened_patients_must_be_screened_again(signed_in, published, clinic_a):
    patient = PatientFactory(clinic=clinic_a)
    ScreeningFactory(patient=patient, protocol_version=published)  # waiting for its treatment
    ScreeningFactory(patient=patient, protocol_version=published, outcome="blocked")  # never clears one
    used = ScreeningFactory(patient=patient, protocol_version=published)
    TreatmentFactory(patient=patient, protocol_version=published, screening=used)
    draft = versioning.start_draft(protocol=published.protocol, change_note="The protocol runs a week longer.")
    stranded = (f"1 screening run for {published} in the last 30 days has not been used for a treatment; once "
                "it is retired it cannot clear one, and that patient must be screened again.")

    publish_page = signed_in.get(f"/admin/protocols/protocolversion/{draft.pk}/publish/").content.decode()
    retire_page = signed_in.get(f"/admin/protocols/protocolversion/{published.pk}/retire/").content.decode()

    assert html.escape(stranded) in publish_page
    assert html.escape(stranded) in retire_page


def test_it_reports_why_a_draft_cannot_be_published(signed_in, clinic_a):
    empty = versioning.create_protocol(clinic=clinic_a, name="Empty", procedure="microneedling")
    response = signed_in.post(f"/admin/protocols/protocolversion/{empty.pk}/publish/", follow=True)
    assert "needs at least one step" in response.content.decode()
    empty.refresh_from_db()
    assert empty.status == Status.DRAFT


def test_it_offers_the_new_draft_action_on_the_changelist(signed_in, published):
    response = signed_in.post("/admin/protocols/protocol/", {
        "action": "start_draft_action", "_selected_action": [published.protocol_id],
    })
    assert response.status_code == 302
    assert published.protocol.versions.filter(status=Status.DRAFT).count() == 1


def test_it_creates_a_protocol_with_a_draft_and_opens_the_draft(signed_in, clinic_a):
    response = signed_in.post("/admin/protocols/protocol/add/", {
        "clinic": clinic_a.pk, "name": "New CO2 protocol", "procedure": "fractional_ablative", "description": "",
    })
    protocol = Protocol.objects.get(name="New CO2 protocol")
    draft = protocol.versions.get()
    assert (draft.number, draft.status) == (1, Status.DRAFT)
    assert response["Location"] == f"/admin/protocols/protocolversion/{draft.pk}/change/"


def test_it_requires_a_clinic_for_a_new_protocol(signed_in):
    response = signed_in.post("/admin/protocols/protocol/add/", {"clinic": "", "name": "Shared?",
                                                                 "procedure": "microneedling"})
    assert response.status_code == 200
    assert not Protocol.objects.filter(name="Shared?").exists()


def test_it_shows_the_version_history_and_a_diff(signed_in, published):
    draft = versioning.start_draft(protocol=published.protocol)
    serum = draft.steps.get(title="At-home exosome serum")
    serum.repeat_count = 5
    serum.save()
    draft.steps.get(title="Sunscreen from today").delete()
    StepFactory(version=draft, title="Lymphatic massage", day=10)
    versioning.publish(version=draft, change_note="Serum for five nights; massage instead of the sunscreen step.")

    history = signed_in.get(f"/admin/protocols/protocol/{published.protocol_id}/versions/").content.decode()
    assert 'data-version="2" data-status="published"' in history
    assert 'data-version="1" data-status="retired"' in history

    body = signed_in.get(f"/admin/protocols/protocol/{published.protocol_id}/diff/",
                         {"old": published.pk, "new": draft.pk}).content.decode()
    assert "Lymphatic massage" in body.split('class="diff-added"')[1].split("</ul>")[0]
    assert "Sunscreen from today" in body.split('class="diff-removed"')[1].split("</ul>")[0]
    changed = body.split('class="diff-changed"')[1].split("</table>")[0]
    assert "At-home exosome serum" in changed and "<td>7</td><td>5</td>" in changed


def test_it_makes_the_procedure_read_only_once_published(signed_in, published):
    body = signed_in.get(f"/admin/protocols/protocol/{published.protocol_id}/change/").content.decode()
    assert 'name="procedure"' not in body
    assert 'name="name"' in body


def test_it_lets_a_coordinator_look_but_not_change(client, clinic_a, published, draft):
    client.force_login(staff(Role.COORDINATOR, clinic_a))
    assert client.get(f"/admin/protocols/protocolversion/{draft.pk}/change/").status_code == 200
    assert client.post(f"/admin/protocols/protocolversion/{draft.pk}/change/", _version_post(draft)).status_code == 403
    assert client.post(f"/admin/protocols/protocolversion/{draft.pk}/publish/").status_code == 403
    assert client.post(f"/admin/protocols/protocolversion/{published.pk}/new-draft/").status_code == 403
    draft.refresh_from_db()
    assert draft.status == Status.DRAFT


def test_it_refuses_every_protocol_page_to_another_clinic(client, clinician_b, published, draft):
    client.force_login(clinician_b)
    protocol = published.protocol_id
    for url in [
        f"/admin/protocols/protocol/{protocol}/versions/",
        f"/admin/protocols/protocol/{protocol}/diff/",
        f"/admin/protocols/protocol/{protocol}/new-draft/",
        f"/admin/protocols/protocolversion/{published.pk}/new-draft/",
        f"/admin/protocols/protocolversion/{draft.pk}/publish/",
        f"/admin/protocols/protocol/{protocol}/history/",
    ]:
        assert client.get(url).status_code == 404, url
        assert client.post(url).status_code in (404, 405), url
    for url in [f"/admin/protocols/protocol/{protocol}/change/", f"/admin/protocols/protocolversion/{published.pk}/change/"]:
        assert _hidden(client.get(url)), url
    assert "Microneedling + exosome" not in client.get("/admin/protocols/protocolversion/").content.decode()
    assert published.protocol.versions.count() == 1
    draft.refresh_from_db()
    assert draft.status == Status.DRAFT


# --- products and lots ---------------------------------------------------------------------------


def test_it_shows_a_lot_with_the_treatments_that_used_it(signed_in, clinic_a):
    lot = install_example_products(clinic=clinic_a)[0]
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a, screening__patient__given_name="Robin")
    ExosomeApplication.objects.create(treatment=treatment, lot=lot, volume_ml=Decimal("2.0"), applied_by=UserFactory())
    body = signed_in.get(f"/admin/protocols/productlot/{lot.pk}/change/").content.decode()
    applications = body.split('id="lot-applications"')[1]
    assert "Robin" in applications and "2.00 ml" in applications
    product_page = signed_in.get(f"/admin/protocols/exosomeproduct/{lot.product_id}/change/").content.decode()
    assert lot.lot_number in product_page


def test_it_filters_lots_by_state(signed_in, clinic_a):
    lots = install_example_products(clinic=clinic_a)
    body = signed_in.get("/admin/protocols/productlot/", {"state": "expired"}).content.decode()
    assert "ADSC-DEMO-0911-EXPIRED" in body
    assert lots[0].lot_number not in body


def test_it_links_the_certificate_to_the_protected_view(signed_in, clinic_a, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    lot = LotFactory(product=ProductFactory(clinic=clinic_a),
                     certificate=SimpleUploadedFile("coa.pdf", b"%PDF-1.4 cert", content_type="application/pdf"))
    body = signed_in.get(f"/admin/protocols/productlot/{lot.pk}/change/").content.decode()
    assert f"/staff/lots/{lot.pk}/certificate/" in body
    assert "/protected-media/" not in body
    response = signed_in.get(f"/staff/lots/{lot.pk}/certificate/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"%PDF-1.4 cert"
    assert AuditEvent.objects.filter(action="lot.certificate.download", object_id=str(lot.pk)).count() == 1


def test_it_refuses_a_certificate_that_is_not_a_pdf_though_named_so_and_saves_nothing(signed_in, clinic_a, settings,
                                                                                       tmp_path):
    settings.MEDIA_ROOT = tmp_path
    product = ProductFactory(clinic=clinic_a)
    script = SimpleUploadedFile("fake.pdf", b"#!/bin/sh\necho owned\n", content_type="application/pdf")
    response = signed_in.post("/admin/protocols/productlot/add/", {
        "clinic": clinic_a.pk, "product": product.pk, "lot_number": "FAKE-1", "received_date": "2026-01-01",
        "expiry_date": "2027-01-01", "storage_checks": "", "recall_reason": "", "certificate": script,
    })
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["certificate"]
    assert "“fake.pdf” is not a PDF document" in errors[0]
    assert not ProductLot.objects.exists()
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_it_refuses_lots_and_certificates_to_another_clinic(client, clinician_b, clinic_a, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    lot = LotFactory(product=ProductFactory(clinic=clinic_a),
                     certificate=SimpleUploadedFile("coa.pdf", b"%PDF", content_type="application/pdf"))
    client.force_login(clinician_b)
    assert client.get(f"/staff/lots/{lot.pk}/certificate/").status_code == 404
    assert _hidden(client.get(f"/admin/protocols/productlot/{lot.pk}/change/"))
    assert lot.lot_number not in client.get("/admin/protocols/productlot/").content.decode()
    assert not AuditEvent.objects.filter(action="lot.certificate.download").exists()


def test_it_refuses_the_certificate_to_anonymous_visitors(client, clinic_a):
    lot = LotFactory(product=ProductFactory(clinic=clinic_a))
    assert client.get(f"/staff/lots/{lot.pk}/certificate/").status_code == 302


# --- rule library -----------------------------------------------------------------------------------


def test_it_shows_defaults_read_only_with_a_customise_button(signed_in):
    install_default_rules()
    rule = ContraindicationRule.objects.get(code="recent-filler")
    body = signed_in.get(f"/admin/protocols/contraindicationrule/{rule.pk}/change/").content.decode()
    assert 'name="window_days"' not in body
    assert f"/admin/protocols/contraindicationrule/{rule.pk}/customise/" in body
    response = signed_in.post(f"/admin/protocols/contraindicationrule/{rule.pk}/change/", {"window_days": 7})
    assert response.status_code == 403
    rule.refresh_from_db()
    assert rule.window_days == 28


def test_it_customises_defaults_for_the_clinic_with_the_action(signed_in, clinic_a):
    install_default_rules()
    codes = ["recent-filler", "recent-peel"]
    ids = list(ContraindicationRule.objects.filter(code__in=codes).values_list("pk", flat=True))
    response = signed_in.post("/admin/protocols/contraindicationrule/", {
        "action": "customise_action", "_selected_action": ids,
    })
    assert response.status_code == 302
    own = ContraindicationRule.objects.filter(clinic=clinic_a)
    assert sorted(own.values_list("code", flat=True)) == codes
    copy = own.get(code="recent-filler")
    body = signed_in.get(f"/admin/protocols/contraindicationrule/{copy.pk}/change/").content.decode()
    assert 'name="window_days"' in body


def test_it_asks_which_clinic_when_staff_belong_to_several(client, clinic_a, clinic_b, clinician):
    install_default_rules()
    MembershipFactory(user=clinician, clinic=clinic_b, role=Role.CLINIC_ADMIN)
    client.force_login(clinician)
    rule = ContraindicationRule.objects.get(code="recent-filler")
    url = f"/admin/protocols/contraindicationrule/{rule.pk}/customise/"
    body = client.get(url).content.decode()
    assert "Harbour Skin Clinic" in body and "Summit Dermatology" in body
    assert client.post(url, {"clinic": clinic_b.pk}).status_code == 302
    assert ContraindicationRule.objects.get(clinic=clinic_b, code="recent-filler").window_days == 28
    assert not ContraindicationRule.objects.filter(clinic=clinic_a).exists()


def test_it_saves_a_clinic_rule_with_ticked_procedures_and_listed_answers(signed_in, clinic_a):
    response = signed_in.post("/admin/protocols/contraindicationrule/add/", {
        "clinic": clinic_a.pk, "code": "dark-skin-lasers", "is_active": "on", "fact": "fitzpatrick_type",
        "condition": "in_set", "values": "V, VI", "procedures": ["fractional_ablative"], "applies_to": "procedure",
        "severity": "relative", "message": "Test spot first.",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    rule = ContraindicationRule.objects.get(code="dark-skin-lasers")
    assert (rule.values, rule.procedures) == (["V", "VI"], ["fractional_ablative"])


def test_it_explains_an_inconsistent_rule(signed_in, clinic_a):
    response = signed_in.post("/admin/protocols/contraindicationrule/add/", {
        "clinic": clinic_a.pk, "code": "bad", "fact": "fitzpatrick_type", "condition": "in_set", "values": "VII",
        "applies_to": "procedure", "severity": "relative", "message": "x",
    })
    assert response.status_code == 200
    assert "Not answers to this question: VII." in response.content.decode()


def test_it_hides_a_clinic_rule_from_another_clinic(client, clinician_b, clinic_a):
    rule = ContraindicationRule.objects.create(clinic=clinic_a, code="harbour-only", fact="pregnant",
                                               severity="absolute", message="x")
    client.force_login(clinician_b)
    assert "harbour-only" not in client.get("/admin/protocols/contraindicationrule/").content.decode()
    assert _hidden(client.get(f"/admin/protocols/contraindicationrule/{rule.pk}/change/"))


def test_it_offers_only_the_library_and_the_protocols_own_clinic_rules(client, clinician, clinic_a, clinic_b, draft):
    MembershipFactory(user=clinician, clinic=clinic_b, role=Role.CLINICIAN)
    mine = ContraindicationRule.objects.create(clinic=clinic_a, code="harbour-rule", fact="pregnant",
                                               severity="absolute", message="x", procedures=["fractional_ablative"])
    theirs = ContraindicationRule.objects.create(clinic=clinic_b, code="summit-rule", fact="pregnant",
                                                 severity="absolute", message="x")
    client.force_login(clinician)
    body = client.get(f"/admin/protocols/protocolversion/{draft.pk}/change/").content.decode()
    assert "harbour-rule" in body and "summit-rule" not in body
    response = client.post(f"/admin/protocols/protocolversion/{draft.pk}/change/",
                           _version_post(draft, added_rules=[theirs.pk]))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert client.post(f"/admin/protocols/protocolversion/{draft.pk}/change/",
                       _version_post(draft, added_rules=[mine.pk])).status_code == 302
    assert list(draft.added_rules.all()) == [mine]
