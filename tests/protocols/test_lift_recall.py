"""Lifting a lot's recall: only a clinic admin, with a written reason kept in the history and the access log."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.utils.html import escape
from rest_framework.test import APIClient

from clinic.models import AuditEvent, Role
from patients.models import ExosomeApplication
from protocols.admin import ProductLotForm
from protocols.lots import LIFT_ACTION, lift_recall
from protocols.models import ProductLot
from tests.admin_forms import change_form_data
from tests.factories import LotFactory, ProductFactory, TreatmentFactory, UserFactory, staff

pytestmark = pytest.mark.django_db
RECALLED_AT = dt.datetime(2026, 6, 1, 9, tzinfo=dt.UTC)
LIFTED_AT = dt.datetime(2026, 6, 3, 14, tzinfo=dt.UTC)
RECALL_REASON = "Endotoxin above the limit in the supplier's retest"
LIFT_REASON = "Supplier's third-party retest of this lot passed; certificate attached"


@pytest.fixture
def lot(clinic_a):
    with time_machine.travel(RECALLED_AT, tick=False):
        return LotFactory(product=ProductFactory(clinic=clinic_a), recalled=True, recall_reason=RECALL_REASON)


def _url(lot: ProductLot) -> str:
    return f"/admin/protocols/productlot/{lot.pk}/change/"


def _form(lot: ProductLot, **changes: str) -> dict[str, object]:
    data = {
        "clinic": lot.clinic_id, "product": lot.product_id, "lot_number": lot.lot_number,
        "received_date": f"{lot.received_date:%Y-%m-%d}", "expiry_date": f"{lot.expiry_date:%Y-%m-%d}",
        "storage_checks": "", "recall_reason": lot.recall_reason,  # "recalled" left out: unticked
    }
    return {**data, **changes}


def _unchanged(lot: ProductLot) -> None:
    stored = ProductLot.objects.get(pk=lot.pk)
    assert (stored.recalled, stored.recalled_at, stored.recall_reason) == (True, RECALLED_AT, RECALL_REASON)
    assert not AuditEvent.objects.filter(action=LIFT_ACTION).exists()
    assert stored.history.count() == 1


def _assert_lifted(lot: ProductLot, by: object) -> None:
    stored = ProductLot.objects.get(pk=lot.pk)
    assert not stored.recalled and stored.recalled_at is None
    latest = stored.history.latest()
    assert (latest.history_change_reason, latest.history_user) == (LIFT_REASON, by)
    event = AuditEvent.objects.get(action=LIFT_ACTION)
    assert (event.actor, event.clinic_id, event.object_id) == (by, lot.clinic_id, str(lot.pk))
    assert event.detail["reason"] == LIFT_REASON
    assert event.detail["lifted_recall"] == {"recalled_at": "2026-06-01T09:00:00Z", "recall_reason": RECALL_REASON}


# --- the admin ----------------------------------------------------------------------------------


def test_the_admin_refuses_a_clinician_who_unticks_recalled(client, clinician, lot):
    client.force_login(clinician)

    response = client.post(_url(lot), _form(lot, recall_lift_reason=LIFT_REASON))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["recalled"] == [
        f"Only a clinic admin of {lot.clinic} may lift the recall of lot {lot.lot_number}. "
        "Ask one to do it, with the reason the lot is safe to use again."
    ]
    _unchanged(lot)


@pytest.mark.parametrize("reason", ["", "mistake", "   ok   fine  "])
def test_the_admin_refuses_a_clinic_admin_without_a_reason(client, clinic_admin, lot, reason):
    client.force_login(clinic_admin)

    response = client.post(_url(lot), _form(lot, recall_lift_reason=reason))

    assert response.status_code == 200
    assert "Say why the recall is lifted, in a few words (at least 10 characters)" in (
        response.context["adminform"].form.errors["recall_lift_reason"][0]
    )
    _unchanged(lot)


@time_machine.travel(LIFTED_AT, tick=False)
def test_a_clinic_admin_lifts_a_recall_with_a_reason_and_the_page_keeps_it(client, clinic_admin, lot):
    client.force_login(clinic_admin)
    page = client.get(_url(lot)).content.decode()
    assert "Reason for lifting the recall" in page
    assert 'id="lifted-recalls"' not in page

    response = client.post(_url(lot), _form(lot, recall_lift_reason=LIFT_REASON))

    assert response.status_code == 302
    _assert_lifted(lot, clinic_admin)
    assert any("The recall of lot" in str(message) for message in get_messages(response.wsgi_request))
    page = client.get(_url(lot)).content.decode()
    lifted = page.split('id="lifted-recalls"')[1].split("</fieldset>")[0]
    # On the clinic's clock (London, summer time).
    assert "2026-06-01 10:00" in lifted and "2026-06-03 15:00" in lifted
    assert escape(RECALL_REASON) in lifted
    assert escape(LIFT_REASON) in lifted and clinic_admin.username in lifted
    assert "Reason for lifting the recall" not in page  # the lot is no longer recalled


def test_of_two_admins_lifting_the_same_recall_the_second_is_told_on_the_form(client, clinic_admin, lot, monkeypatch):
    other_admin = staff(Role.CLINIC_ADMIN, lot.clinic, username="admin_a2")
    clean = ProductLotForm.clean

    def lifted_elsewhere_meanwhile(form):
        # The second admin's request has read the lot (still recalled) when the first admin's lift commits.
        assert form.instance.recalled
        lift_recall(lot=ProductLot.objects.get(pk=lot.pk), by=other_admin, reason=LIFT_REASON)
        return clean(form)

    monkeypatch.setattr(ProductLotForm, "clean", lifted_elsewhere_meanwhile)
    client.force_login(clinic_admin)

    response = client.post(_url(lot), _form(lot, recall_lift_reason="The retest passed, as the supplier wrote"))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["recalled"] == [
        f"The recall of lot {lot.lot_number} has already been lifted, by someone else since this page was opened: "
        "reload the lot to see it."
    ]
    # Lifted once, by the first admin, with the first admin's reason.
    assert not ProductLot.objects.get(pk=lot.pk).recalled
    assert [(event.actor, event.detail["reason"]) for event in AuditEvent.objects.filter(action=LIFT_ACTION)] == [
        (other_admin, LIFT_REASON)
    ]


def test_an_admin_whose_page_was_opened_before_another_lifted_the_recall_is_told_so(client, clinic_admin, lot):
    other_admin = staff(Role.CLINIC_ADMIN, lot.clinic, username="admin_a2")
    lift_recall(lot=lot, by=other_admin, reason=LIFT_REASON)
    client.force_login(clinic_admin)

    response = client.post(_url(lot), _form(lot, recall_lift_reason="The retest passed, as the supplier wrote"))

    assert response.status_code == 302
    assert (f"The recall of lot {lot.lot_number} had already been lifted by {other_admin} before you saved: your "
            "reason was not recorded. The lot's page shows the reason given.") in [
        str(message) for message in get_messages(response.wsgi_request)
    ]
    assert AuditEvent.objects.filter(action=LIFT_ACTION).count() == 1


def _opened(client, lot: ProductLot) -> dict[str, object]:
    """What the lot's page would post back unchanged (no certificate file chosen)."""
    data = change_form_data(client.get(_url(lot)))
    data.pop("certificate", None)
    return data


def test_a_page_opened_before_the_recall_was_lifted_does_not_recall_the_lot_again(client, clinic_admin, lot):
    client.force_login(clinic_admin)
    opened = _opened(client, lot)  # "Recalled" ticked, as the lot was
    other_admin = staff(Role.CLINIC_ADMIN, lot.clinic, username="admin_a2")
    lift_recall(lot=lot, by=other_admin, reason=LIFT_REASON)

    response = client.post(_url(lot), {**opened, "storage_checks": "Fridge at 4 °C, checked 3 June"})

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        f"Lot {lot.lot_number} was no longer recalled since this page was opened by {other_admin}: nothing was "
        "saved. Reload the lot and make your change again."
    ]
    stored = ProductLot.objects.get(pk=lot.pk)
    assert (stored.recalled, stored.storage_checks) == (False, "")


def test_a_page_opened_after_the_lift_saves_as_usual(client, clinic_admin, lot):
    lift_recall(lot=lot, by=staff(Role.CLINIC_ADMIN, lot.clinic, username="admin_a2"), reason=LIFT_REASON)
    client.force_login(clinic_admin)
    opened = _opened(client, lot)

    response = client.post(_url(lot), {**opened, "storage_checks": "Fridge at 4 °C, checked 3 June"})

    assert response.status_code == 302
    assert ProductLot.objects.get(pk=lot.pk).storage_checks == "Fridge at 4 °C, checked 3 June"


def test_the_lots_page_shows_a_recall_lifted_without_a_reason(client, clinic_admin, lot):
    # Lifted before a reason was asked for (or outside the admin and API): still shown, as such.
    lot.recalled = False
    lot.save()
    client.force_login(clinic_admin)

    lifted = client.get(_url(lot)).content.decode().split('id="lifted-recalls"')[1]

    assert "No reason was recorded." in lifted


def test_a_reason_given_without_unticking_changes_nothing(client, clinic_admin, lot):
    client.force_login(clinic_admin)

    response = client.post(_url(lot), _form(lot, recalled="on", recall_lift_reason=LIFT_REASON))

    assert response.status_code == 302
    assert ProductLot.objects.get(pk=lot.pk).recalled
    assert not AuditEvent.objects.filter(action=LIFT_ACTION).exists()


# --- the API ------------------------------------------------------------------------------------


def _api(user: object) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_the_api_refuses_a_clinician_who_lifts_a_recall(clinician, lot):
    response = _api(clinician).patch(
        f"/api/v1/lots/{lot.pk}/", {"recalled": False, "recall_lift_reason": LIFT_REASON}, format="json"
    )

    assert response.status_code == 403
    assert "Only a clinic admin" in response.json()["detail"]
    _unchanged(lot)


@pytest.mark.parametrize("body", [{"recalled": False}, {"recalled": False, "recall_lift_reason": "oops"}])
def test_the_api_needs_a_reason_to_lift_a_recall(clinic_admin, lot, body):
    response = _api(clinic_admin).patch(f"/api/v1/lots/{lot.pk}/", body, format="json")

    assert response.status_code == 400
    assert "at least 10 characters" in response.json()["recall_lift_reason"][0]
    _unchanged(lot)


def test_a_clinic_admin_lifts_a_recall_through_the_api(clinic_admin, lot):
    response = _api(clinic_admin).patch(
        f"/api/v1/lots/{lot.pk}/", {"recalled": False, "recall_lift_reason": LIFT_REASON}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["recalled"], body["recalled_at"], body["state"]) == (False, None, "usable")
    assert "recall_lift_reason" not in body
    _assert_lifted(lot, clinic_admin)


# --- after recalling: the message and the list of treatments ------------------------------------


@pytest.fixture
def used_lot(clinic_a):
    lot = LotFactory(product=ProductFactory(clinic=clinic_a))
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a)
    ExosomeApplication.objects.create(treatment=treatment, lot=lot, volume_ml=Decimal("1"), applied_by=UserFactory())
    return lot, treatment


@pytest.mark.parametrize(("role", "ending"), [
    ("clinic_admin", "with the recall list to download."),
    ("clinician", "and a clinic admin or auditor can download the recall list there."),
])
def test_the_recall_message_offers_the_download_only_to_who_can_download(client, request, used_lot, role, ending):
    lot, _treatment = used_lot
    client.force_login(request.getfixturevalue(role))

    response = client.post(_url(lot), _form(lot, recalled="on", recall_reason="Cold chain broken in transit"))

    assert response.status_code == 302
    messages = [str(message) for message in get_messages(response.wsgi_request)]
    assert (f"Lot {lot.lot_number} is recalled from now on: it can no longer be applied. 1 patient received it; "
            f"their treatments are listed on the lot's page, {ending}") in messages


def test_the_lots_treatments_link_to_the_patient_and_the_treatment(client, clinician, used_lot):
    lot, treatment = used_lot
    client.force_login(clinician)

    applications = client.get(_url(lot)).content.decode().split('id="lot-applications"')[1]

    assert f'href="/admin/patients/treatment/{treatment.pk}/change/"' in applications
    assert f'href="/admin/patients/patient/{treatment.patient_id}/change/"' in applications


def test_an_auditor_sees_a_recalled_lot_without_the_lifting_field(client, auditor, lot):
    client.force_login(auditor)

    response = client.get(_url(lot))

    assert response.status_code == 200
    assert "field-recall_reason" in response.content.decode()
    assert "field-recall_lift_reason" not in response.content.decode()
