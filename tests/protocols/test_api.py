"""The protocols API: CRUD, versioning actions, 400s with field errors, filters and clinic scoping."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from clinic.models import AuditEvent, Role
from protocols import versioning
from protocols.defaults import install_default_rules, install_example_protocols
from protocols.models import ContraindicationRule, ExosomeProduct, ProductLot, Protocol, ProtocolStep, ProtocolVersion
from tests.factories import LotFactory, ProductFactory, ProtocolFactory, RuleFactory, StepFactory, staff

pytestmark = pytest.mark.django_db
Status = ProtocolVersion.Status


@pytest.fixture
def api(clinician):
    client = APIClient()
    client.force_authenticate(clinician)
    return client


@pytest.fixture
def api_b(clinician_b):
    client = APIClient()
    client.force_authenticate(clinician_b)
    return client


@pytest.fixture
def draft(clinic_a):
    version = versioning.create_protocol(clinic=clinic_a, name="Microneedling + exosome", procedure="microneedling")
    StepFactory(version=version, title="Self-check", kind="outcome_check", day=3)
    return version


def _step(version, **overrides):
    body = {"version": version.pk, "kind": "instruction", "title": "Cleanse", "timing": "local_time", "day": 0,
            "local_time": "19:00"}
    body.update(overrides)
    return body


# --- protocols and versions --------------------------------------------------------------------------


def test_it_creates_a_protocol_with_a_draft_version(api, clinic_a):
    response = api.post("/api/v1/protocols/", {"clinic": clinic_a.pk, "name": "CO2", "procedure": "fractional_ablative"})
    assert response.status_code == 201, response.data
    assert response.data["status"] == "draft"
    assert [v["number"] for v in response.data["versions"]] == [1]
    assert Protocol.objects.get(pk=response.data["id"]).versions.get().status == Status.DRAFT


def test_it_nests_versions_and_steps_in_a_protocol(api, draft):
    response = api.get(f"/api/v1/protocols/{draft.protocol_id}/")
    assert response.status_code == 200
    (version,) = response.data["versions"]
    assert [step["title"] for step in version["steps"]] == ["Self-check"]
    assert version["timeline_url"].endswith(f"/staff/protocol-versions/{draft.pk}/timeline.svg")


def test_it_refuses_a_protocol_for_another_clinic(api, clinic_b):
    response = api.post("/api/v1/protocols/", {"clinic": clinic_b.pk, "name": "X", "procedure": "microneedling"})
    assert response.status_code == 400
    assert "clinic" in response.data
    assert not Protocol.objects.filter(name="X").exists()


def test_it_refuses_writes_to_a_coordinator(clinic_a, draft):
    client = APIClient()
    client.force_authenticate(staff(Role.COORDINATOR, clinic_a))
    assert client.get("/api/v1/protocols/").status_code == 200
    response = client.post("/api/v1/protocol-steps/", _step(draft))
    assert response.status_code == 403
    assert client.post(f"/api/v1/protocols/{draft.protocol_id}/publish/").status_code == 403


def test_it_publishes_the_draft_and_starts_a_new_one(api, draft, clinician):
    response = api.post(f"/api/v1/protocols/{draft.protocol_id}/publish/", {"change_note": "First release"})
    assert response.status_code == 200, response.data
    assert (response.data["status"], response.data["published_by"]) == ("published", clinician.pk)
    response = api.post(f"/api/v1/protocols/{draft.protocol_id}/draft/", {})
    assert response.status_code == 201
    assert (response.data["number"], response.data["status"]) == (2, "draft")
    assert [step["title"] for step in response.data["steps"]] == ["Self-check"]


def test_it_answers_400_when_there_is_nothing_to_publish(api, draft):
    api.post(f"/api/v1/protocols/{draft.protocol_id}/publish/")
    response = api.post(f"/api/v1/protocols/{draft.protocol_id}/publish/")
    assert response.status_code == 400
    assert "no draft" in str(response.data)


def test_it_answers_400_for_a_second_draft(api, draft):
    response = api.post(f"/api/v1/protocols/{draft.protocol_id}/draft/", {})
    assert response.status_code == 400
    assert "already has a draft" in str(response.data)


def test_it_refuses_to_change_a_published_version_through_the_api(api, draft, clinic_a):
    versioning.publish(version=draft)
    response = api.patch(f"/api/v1/protocol-versions/{draft.pk}/", {"length_days": 60})
    assert response.status_code == 400
    assert "cannot change" in str(response.data)
    step = draft.steps.get()
    response = api.patch(f"/api/v1/protocol-steps/{step.pk}/", {"title": "Changed"})
    assert response.status_code == 400
    assert "cannot change" in str(response.data["version"])
    assert api.delete(f"/api/v1/protocol-steps/{step.pk}/").status_code == 400
    assert api.post("/api/v1/protocol-steps/", _step(draft)).status_code == 400
    draft.refresh_from_db()
    assert (draft.length_days, draft.steps.get().title, draft.steps.count()) == (42, "Self-check", 1)


def test_it_edits_a_draft_version_and_its_rules(api, draft, clinic_a):
    install_default_rules()
    default = ContraindicationRule.objects.get(code="recent-filler")
    own = RuleFactory(clinic=clinic_a, fact="pregnant")
    response = api.patch(f"/api/v1/protocol-versions/{draft.pk}/",
                         {"length_days": 28, "added_rules": [own.pk], "removed_rules": [default.pk]})
    assert response.status_code == 200, response.data
    assert list(draft.added_rules.all()) == [own]
    assert list(draft.removed_rules.all()) == [default]


def test_it_refuses_a_length_that_cuts_off_a_step(api, draft):
    StepFactory(version=draft, title="Next session", day=28)
    response = api.patch(f"/api/v1/protocol-versions/{draft.pk}/", {"length_days": 14})
    assert response.status_code == 400
    assert "Next session" in str(response.data["length_days"])


def test_it_refuses_another_clinics_rule_on_a_version(api, draft, clinic_b):
    foreign = RuleFactory(clinic=clinic_b)
    response = api.patch(f"/api/v1/protocol-versions/{draft.pk}/", {"added_rules": [foreign.pk]})
    assert response.status_code == 400
    assert draft.added_rules.count() == 0


def test_it_publishes_retires_and_diffs_versions(api, draft):
    v1 = versioning.publish(version=draft)
    v2 = versioning.start_draft(protocol=v1.protocol)
    StepFactory(version=v2, title="Sunscreen", day=1)
    assert api.post(f"/api/v1/protocol-versions/{v2.pk}/publish/").status_code == 400  # no change note
    assert api.post(f"/api/v1/protocol-versions/{v2.pk}/publish/", {"change_note": "Adds a sunscreen step."},
                    format="json").status_code == 200
    response = api.get(f"/api/v1/protocol-versions/{v2.pk}/diff/", {"against": v1.pk})
    assert response.status_code == 200
    assert [step["title"] for step in response.data["added"]] == ["Sunscreen"]
    assert [step["title"] for step in response.data["unchanged"]] == ["Self-check"]
    assert api.post(f"/api/v1/protocol-versions/{v2.pk}/retire/").status_code == 200
    v2.refresh_from_db()
    assert v2.status == Status.RETIRED
    assert api.get(f"/api/v1/protocol-versions/{v2.pk}/diff/").status_code == 400


def test_it_filters_protocols_by_procedure_and_status(api, clinic_a):
    versions = install_example_protocols(clinic=clinic_a)
    versioning.start_draft(protocol=versions["microneedling"].protocol)
    ProtocolFactory(clinic=clinic_a, name="Empty draft", procedure="microneedling")
    response = api.get("/api/v1/protocols/", {"procedure": "fractional_ablative"})
    assert [p["name"] for p in response.data["results"]] == ["Ablative fractional CO₂ + exosome"]
    response = api.get("/api/v1/protocols/", {"status": "published", "procedure": "microneedling"})
    assert [p["name"] for p in response.data["results"]] == ["Microneedling + exosome"]


# --- steps: every validation message through the API ------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"timing": "offset", "day": None, "local_time": None}, "offset_value", "needs an offset"),
        ({"day": None}, "day", "needs a day"),
        ({"local_time": None}, "local_time", "needs a time of day"),
        ({"repeat_count": 3}, "repeat_every_days", "at least 1 day"),
        ({"day": 40, "repeat_count": 5, "repeat_every_days": 1}, "repeat_count", "after the protocol ends on day 42"),
        ({"day": 43}, "day", "after the protocol ends on day 42"),
        ({"day": -20}, "day", "at most 14 days before"),
        ({"avoid_until_day": 5}, "avoid_until_day", "Only avoidance steps"),
        ({"kind": "avoidance"}, "avoid_until_day", "An avoidance needs an end"),
        ({"kind": "avoidance", "day": 3, "avoid_until_day": 2}, "avoid_until_day", "before it starts on day 3"),
        ({"kind": "avoidance", "day": 3, "avoid_until_day": 3}, "avoid_until_day", "cannot also end then"),
        ({"kind": "avoidance", "avoid_until_day": 50}, "avoid_until_day", "after the protocol ends on day 42"),
        ({"remind_minutes_before": 20000}, "remind_minutes_before", "at most 10080 minutes"),
        ({"remind_minutes_before": -5}, "remind_minutes_before", "greater than or equal to 0"),
        ({"local_time": "24:30"}, "local_time", "Time has wrong format"),
        ({"offset_value": 30}, "offset_value", "has no offset"),
        ({"timing": "offset", "offset_value": 30, "local_time": None}, "day", "timed by offset has no day"),
        ({"timing": "offset", "offset_value": 30, "day": None}, "local_time", "timed by offset has no local time"),
        ({"timing": "offset", "offset_value": 43, "offset_unit": "days", "day": None, "local_time": None},
         "offset_value", "after the protocol ends on day 42"),
    ],
)
def test_it_answers_400_with_the_field_error_for_an_impossible_step(api, draft, overrides, field, message):
    response = api.post("/api/v1/protocol-steps/", _step(draft, **overrides))
    assert response.status_code == 400
    assert message in " ".join(map(str, response.data[field]))
    assert draft.steps.count() == 1


def test_it_refuses_a_product_on_a_step_that_is_not_an_application(api, draft, clinic_a):
    product = ProductFactory(clinic=clinic_a)
    response = api.post("/api/v1/protocol-steps/", _step(draft, product=product.pk))
    assert response.status_code == 400
    assert "Only application steps" in str(response.data["product"])


def test_it_creates_updates_and_deletes_a_draft_step(api, draft, clinic_a):
    product = ProductFactory(clinic=clinic_a)
    response = api.post("/api/v1/protocol-steps/", _step(
        draft, kind="home_application", title="Serum", day=1, local_time="20:00", repeat_count=7,
        repeat_every_days=1, product=product.pk,
    ))
    assert response.status_code == 201, response.data
    step_id = response.data["id"]
    response = api.patch(f"/api/v1/protocol-steps/{step_id}/", {"repeat_count": 50})
    assert response.status_code == 400
    assert "day 50" in str(response.data["repeat_count"])
    assert api.patch(f"/api/v1/protocol-steps/{step_id}/", {"local_time": "20:30"}).status_code == 200
    assert ProtocolStep.objects.get(pk=step_id).local_time == dt.time(20, 30)
    assert api.delete(f"/api/v1/protocol-steps/{step_id}/").status_code == 204
    assert not ProtocolStep.objects.filter(pk=step_id).exists()


# --- scoping -------------------------------------------------------------------------------------------


def test_it_hides_another_clinics_protocols_products_lots_and_rules(api_b, draft, clinic_a):
    lot = LotFactory(product=ProductFactory(clinic=clinic_a))
    rule = RuleFactory(clinic=clinic_a, fact="pregnant")
    assert api_b.get("/api/v1/protocols/").data["results"] == []
    assert api_b.get(f"/api/v1/protocols/{draft.protocol_id}/").status_code == 404
    assert api_b.get(f"/api/v1/protocol-versions/{draft.pk}/").status_code == 404
    assert api_b.get(f"/api/v1/products/{lot.product_id}/").status_code == 404
    assert api_b.get(f"/api/v1/lots/{lot.pk}/").status_code == 404
    assert api_b.get(f"/api/v1/lots/{lot.pk}/certificate/").status_code == 404
    assert api_b.get(f"/api/v1/contraindication-rules/{rule.pk}/").status_code == 404
    assert api_b.patch(f"/api/v1/protocol-steps/{draft.steps.get().pk}/", {"title": "x"}).status_code == 404
    assert api_b.post(f"/api/v1/protocols/{draft.protocol_id}/publish/").status_code == 404
    assert api_b.post("/api/v1/protocol-steps/", _step(draft)).status_code == 400


def test_it_shows_shared_templates_to_all_staff_but_lets_no_one_write_them(api, api_b, clinic_a):
    template = ProtocolFactory(clinic=None, name="Shared template")
    shared = versioning.start_draft(protocol=template)
    shared_product = ProductFactory(clinic=None, name="Catalogue serum")
    assert api_b.get(f"/api/v1/protocols/{template.pk}/").status_code == 200
    assert api.get(f"/api/v1/products/{shared_product.pk}/").status_code == 200
    assert api.patch(f"/api/v1/protocols/{template.pk}/", {"name": "Mine now"}).status_code == 403
    assert api.patch(f"/api/v1/products/{shared_product.pk}/", {"name": "Mine"}).status_code == 403
    assert api.post("/api/v1/protocol-steps/", _step(shared)).status_code == 400
    assert api.post("/api/v1/products/", {"clinic": None, "name": "N", "manufacturer": "M", "source": "plant",
                                          "cell_type": "plant"}).status_code == 400
    template.refresh_from_db()
    assert template.name == "Shared template"


# --- products and lots -----------------------------------------------------------------------------


def test_it_creates_a_product_and_refuses_an_upside_down_storage_range(api, clinic_a):
    body = {"clinic": clinic_a.pk, "name": "ADSC", "manufacturer": "M", "source": "human",
            "cell_type": "adipose-derived stem cells", "plated": True}
    response = api.post("/api/v1/products/", {**body, "storage_min_celsius": "8", "storage_max_celsius": "2"})
    assert response.status_code == 400
    assert "storage_max_celsius" in response.data
    assert api.post("/api/v1/products/", body).status_code == 201
    assert api.get("/api/v1/products/", {"source": "human"}).data["count"] == 1
    assert api.get("/api/v1/products/", {"source": "plant"}).data["count"] == 0


@time_machine.travel(dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC), tick=False)
def test_it_filters_lots_by_product_expiry_and_recall(api, clinic_a):
    product = ProductFactory(clinic=clinic_a)
    fresh = LotFactory(product=product, lot_number="FRESH", expiry_date=dt.date(2027, 1, 1))
    LotFactory(product=product, lot_number="OLD", received_date=dt.date(2025, 1, 1), expiry_date=dt.date(2026, 4, 30))
    LotFactory(product=product, lot_number="BAD", recalled=True, recall_reason="Sterility failure")
    LotFactory(product=ProductFactory(clinic=clinic_a), lot_number="OTHER")

    def numbers(**params):
        return sorted(lot["lot_number"] for lot in api.get("/api/v1/lots/", params).data["results"])

    assert numbers(product=product.pk) == ["BAD", "FRESH", "OLD"]
    assert numbers(product=product.pk, expired="true") == ["OLD"]
    assert numbers(product=product.pk, recalled="true") == ["BAD"]
    assert numbers(product=product.pk, usable_on="2026-05-01") == ["FRESH"]
    assert api.get(f"/api/v1/lots/{fresh.pk}/").data["state"] == "usable"


def test_it_refuses_a_lot_that_expires_before_it_arrived_or_a_recall_without_reason(api, clinic_a):
    product = ProductFactory(clinic=clinic_a)
    body = {"clinic": clinic_a.pk, "product": product.pk, "lot_number": "L1", "received_date": "2026-05-01",
            "expiry_date": "2026-04-01"}
    response = api.post("/api/v1/lots/", body)
    assert response.status_code == 400
    assert "expires before it was received" in str(response.data["expiry_date"])
    response = api.post("/api/v1/lots/", {**body, "expiry_date": "2027-01-01", "recalled": True})
    assert response.status_code == 400
    assert "recall_reason" in response.data
    assert not ProductLot.objects.exists()


def test_it_refuses_a_lot_of_another_clinics_product(api, clinic_a, clinic_b):
    clinician = staff(Role.CLINICIAN, clinic_b)
    api.force_authenticate(clinician)
    staff_in_both = clinician
    from tests.factories import MembershipFactory

    MembershipFactory(user=staff_in_both, clinic=clinic_a, role=Role.CLINICIAN)
    product_b = ProductFactory(clinic=clinic_b)
    response = api.post("/api/v1/lots/", {"clinic": clinic_a.pk, "product": product_b.pk, "lot_number": "X",
                                           "received_date": "2026-01-01", "expiry_date": "2027-01-01"})
    assert response.status_code == 400
    assert "another clinic" in str(response.data["product"])


def test_it_uploads_a_certificate_and_serves_it_only_through_the_api_action(api, api_b, clinic_a, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    product = ProductFactory(clinic=clinic_a)
    pdf = SimpleUploadedFile("coa.pdf", b"%PDF-1.4 certificate", content_type="application/pdf")
    response = api.post("/api/v1/lots/", {"clinic": clinic_a.pk, "product": product.pk, "lot_number": "C1",
                                           "received_date": "2026-01-01", "expiry_date": "2027-01-01",
                                           "certificate": pdf}, format="multipart")
    assert response.status_code == 201, response.data
    assert "certificate" not in response.data
    assert "/protected-media/" not in str(response.data)
    assert response.data["certificate_url"].endswith(f"/api/v1/lots/{response.data['id']}/certificate/")
    download = api.get(f"/api/v1/lots/{response.data['id']}/certificate/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"%PDF-1.4 certificate"
    assert "attachment" in download["Content-Disposition"]
    assert AuditEvent.objects.filter(action="lot.certificate.download", object_id=str(response.data["id"])).exists()
    assert api_b.get(f"/api/v1/lots/{response.data['id']}/certificate/").status_code == 404


def test_it_refuses_a_certificate_that_is_not_a_document(api, clinic_a, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    product = ProductFactory(clinic=clinic_a)
    script = SimpleUploadedFile("coa.html", b"<script>alert(1)</script>", content_type="text/html")
    response = api.post("/api/v1/lots/", {"clinic": clinic_a.pk, "product": product.pk, "lot_number": "C2",
                                           "received_date": "2026-01-01", "expiry_date": "2027-01-01",
                                           "certificate": script}, format="multipart")
    assert response.status_code == 400
    assert "certificate" in response.data


def test_it_refuses_a_certificate_named_pdf_that_is_not_one_on_create_and_on_update(api, clinic_a, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    product = ProductFactory(clinic=clinic_a)
    body = {"clinic": clinic_a.pk, "product": product.pk, "lot_number": "C3", "received_date": "2026-01-01",
            "expiry_date": "2027-01-01"}
    script = SimpleUploadedFile("fake.pdf", b"#!/bin/sh\necho owned\n", content_type="application/pdf")
    response = api.post("/api/v1/lots/", {**body, "certificate": script}, format="multipart")
    assert response.status_code == 400
    assert "is not a PDF document" in str(response.data["certificate"])
    assert not ProductLot.objects.exists()

    pdf = SimpleUploadedFile("coa.pdf", b"%PDF-1.4 certificate", content_type="application/pdf")
    lot_id = api.post("/api/v1/lots/", {**body, "certificate": pdf}, format="multipart").data["id"]
    picture = SimpleUploadedFile("coa.png", b"%PDF-1.4 not a picture", content_type="image/png")
    response = api.patch(f"/api/v1/lots/{lot_id}/", {"certificate": picture}, format="multipart")
    assert response.status_code == 400
    assert "is not a PNG picture" in str(response.data["certificate"])
    with ProductLot.objects.get(pk=lot_id).certificate.open("rb") as stored:
        assert stored.read() == b"%PDF-1.4 certificate"


# --- rules ------------------------------------------------------------------------------------------


def test_it_filters_rules_by_procedure_including_rules_for_all(api):
    install_default_rules()
    codes = {r["code"] for r in api.get("/api/v1/contraindication-rules/", {"procedure": "microneedling",
                                                                             "page_size": 100}).data["results"]}
    assert "active-dermatosis-microneedling" in codes
    assert "active-infection" in codes  # applies to every procedure
    assert "active-dermatosis-laser" not in codes
    assert "hsv-history-ablative" not in codes
    ablative = {r["code"] for r in api.get("/api/v1/contraindication-rules/", {"procedure": "fractional_ablative"})
                .data["results"]}
    assert "hsv-history-ablative" in ablative


def test_it_lets_a_clinic_add_a_rule_but_not_edit_a_default(api, clinic_a):
    install_default_rules()
    default = ContraindicationRule.objects.get(code="recent-filler")
    assert api.patch(f"/api/v1/contraindication-rules/{default.pk}/", {"window_days": 7}).status_code == 403
    body = {"clinic": clinic_a.pk, "code": "sunburn", "fact": "recent_tan_date", "condition": "within_days",
            "window_days": 7, "severity": "caution", "message": "Recent sun.", "procedures": ["fractional_ablative"]}
    response = api.post("/api/v1/contraindication-rules/", body)
    assert response.status_code == 201, response.data
    assert api.post("/api/v1/contraindication-rules/", body).status_code == 400  # same code twice
    default.refresh_from_db()
    assert default.window_days == 28


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"condition": "within_days", "window_days": None}, "window_days"),
        ({"condition": "within_days", "fact": "pregnant", "window_days": 3}, "condition"),
        ({"condition": "in_set", "fact": "fitzpatrick_type", "values": ["VII"]}, "values"),
        ({"procedures": ["tattoo_removal"]}, "procedures"),
        ({"fact": "star_sign"}, "fact"),
        ({"clinic": None}, "clinic"),
    ],
)
def test_it_answers_400_for_an_inconsistent_rule(api, clinic_a, overrides, field):
    body = {"clinic": clinic_a.pk, "code": "own-rule", "fact": "pregnant", "condition": "is_true",
            "severity": "relative", "message": "Check."}
    body.update(overrides)
    response = api.post("/api/v1/contraindication-rules/", body)
    assert response.status_code == 400
    assert field in response.data


def test_it_customises_a_default_for_the_clinic(api, api_b, clinic_a):
    install_default_rules()
    default = ContraindicationRule.objects.get(code="topical-retinoid-5-days")
    response = api.post(f"/api/v1/contraindication-rules/{default.pk}/customise/", {"clinic": clinic_a.pk})
    assert response.status_code == 201
    own = ContraindicationRule.objects.get(pk=response.data["id"])
    assert (own.clinic, own.code, own.window_days) == (clinic_a, default.code, 5)
    assert api.patch(f"/api/v1/contraindication-rules/{own.pk}/", {"window_days": 14}).status_code == 200
    assert api_b.get(f"/api/v1/contraindication-rules/{own.pk}/").status_code == 404
    assert api_b.post(f"/api/v1/contraindication-rules/{default.pk}/customise/",
                      {"clinic": clinic_a.pk}).status_code == 400
    assert ExosomeProduct.objects.count() == 0


def test_it_lists_protocols_without_a_query_per_protocol(api, clinic_a, django_assert_max_num_queries):
    install_example_protocols(clinic=clinic_a)
    with django_assert_max_num_queries(10):
        response = api.get("/api/v1/protocols/")
    assert response.data["count"] == 3
    assert all(p["current_version"] for p in response.data["results"])
