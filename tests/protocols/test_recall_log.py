"""Recording a recall is in the access log (lot.recalled); lifting a recall that is not there is refused, unrecorded."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from rest_framework.test import APIClient

from clinic.models import AuditEvent
from patients.models import ExosomeApplication
from protocols.lots import LIFT_ACTION
from protocols.models import ProductLot
from protocols.recalls import RECALL_ACTION
from tests.factories import LotFactory, ProductFactory, TreatmentFactory, UserFactory

pytestmark = pytest.mark.django_db
RECALLED_AT = dt.datetime(2026, 6, 1, 9, tzinfo=dt.UTC)
RECALL_REASON = "Endotoxin above the limit in the supplier's retest"
LIFT_REASON = "Supplier's third-party retest of this lot passed; certificate attached"


def _api(user: object) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.fixture
def used_lot(clinic_a):
    """A lot two patients received, one of them twice."""
    lot = LotFactory(product=ProductFactory(clinic=clinic_a))
    first = TreatmentFactory(screening__patient__clinic=clinic_a)
    again = TreatmentFactory(screening__patient=first.patient)
    other = TreatmentFactory(screening__patient__clinic=clinic_a)
    for treatment in (first, again, other):
        ExosomeApplication.objects.create(treatment=treatment, lot=lot, volume_ml=Decimal("1"),
                                          applied_by=UserFactory())
    return lot


def _assert_recall_logged(lot: ProductLot, by: object, *, patients: int) -> None:
    event = AuditEvent.objects.get(action=RECALL_ACTION)
    assert (event.actor, event.clinic_id, event.object_type, event.object_id) == (
        by, lot.clinic_id, "protocols.productlot", str(lot.pk)
    )
    assert event.created_at == RECALLED_AT
    assert event.detail == {
        "recalled_at": "2026-06-01T09:00:00Z", "recall_reason": RECALL_REASON, "patients_who_received_it": patients,
    }


# --- recording a recall -------------------------------------------------------------------------


def _lot_form(lot: ProductLot, **changes: str) -> dict[str, object]:
    data = {
        "clinic": lot.clinic_id, "product": lot.product_id, "lot_number": lot.lot_number,
        "received_date": f"{lot.received_date:%Y-%m-%d}", "expiry_date": f"{lot.expiry_date:%Y-%m-%d}",
        "storage_checks": "", "recall_reason": lot.recall_reason, "recall_as_opened": "0",
    }
    return {**data, **changes}


@time_machine.travel(RECALLED_AT, tick=False)
def test_recalling_a_lot_in_the_admin_is_logged_with_how_many_patients_received_it(client, clinician, used_lot):
    client.force_login(clinician)

    response = client.post(f"/admin/protocols/productlot/{used_lot.pk}/change/",
                           _lot_form(used_lot, recalled="on", recall_reason=RECALL_REASON))

    assert response.status_code == 302
    _assert_recall_logged(used_lot, clinician, patients=2)


@time_machine.travel(RECALLED_AT, tick=False)
def test_a_lot_added_already_recalled_is_logged(client, clinician, clinic_a):
    product = ProductFactory(clinic=clinic_a)
    client.force_login(clinician)

    response = client.post("/admin/protocols/productlot/add/", {
        "clinic": clinic_a.pk, "product": product.pk, "lot_number": "R-1", "received_date": "2026-05-01",
        "expiry_date": "2027-05-01", "storage_checks": "", "recalled": "on", "recall_reason": RECALL_REASON,
    })

    assert response.status_code == 302
    _assert_recall_logged(ProductLot.objects.get(lot_number="R-1"), clinician, patients=0)


@time_machine.travel(RECALLED_AT, tick=False)
def test_other_changes_to_a_lot_log_no_recall(client, clinician, used_lot):
    used_lot.recalled, used_lot.recall_reason = True, RECALL_REASON
    used_lot.save()
    client.force_login(clinician)

    client.post(f"/admin/protocols/productlot/{used_lot.pk}/change/",
                _lot_form(used_lot, recalled="on", recall_as_opened="1", storage_checks="4 °C on receipt"))
    client.post(f"/admin/protocols/productlot/{used_lot.pk}/change/", _lot_form(used_lot, recalled="on"))

    assert ProductLot.objects.get(pk=used_lot.pk).storage_checks == "4 °C on receipt"
    assert not AuditEvent.objects.filter(action=RECALL_ACTION).exists()


@time_machine.travel(RECALLED_AT, tick=False)
def test_recalling_a_lot_through_the_api_is_logged(clinician, used_lot):
    response = _api(clinician).patch(f"/api/v1/lots/{used_lot.pk}/",
                                     {"recalled": True, "recall_reason": RECALL_REASON}, format="json")

    assert response.status_code == 200
    _assert_recall_logged(used_lot, clinician, patients=2)

    again = _api(clinician).patch(f"/api/v1/lots/{used_lot.pk}/", {"recalled": True}, format="json")

    assert again.status_code == 200
    assert AuditEvent.objects.filter(action=RECALL_ACTION).count() == 1


@time_machine.travel(RECALLED_AT, tick=False)
def test_a_lot_created_recalled_through_the_api_is_logged(clinician, clinic_a):
    product = ProductFactory(clinic=clinic_a)

    response = _api(clinician).post("/api/v1/lots/", {
        "clinic": clinic_a.pk, "product": product.pk, "lot_number": "R-2", "received_date": "2026-05-01",
        "expiry_date": "2027-05-01", "recalled": True, "recall_reason": RECALL_REASON,
    }, format="json")

    assert response.status_code == 201
    _assert_recall_logged(ProductLot.objects.get(lot_number="R-2"), clinician, patients=0)


@time_machine.travel(RECALLED_AT, tick=False)
def test_the_access_log_shows_the_recall(client, clinician, clinic_admin, used_lot):
    _api(clinician).patch(f"/api/v1/lots/{used_lot.pk}/",
                          {"recalled": True, "recall_reason": RECALL_REASON}, format="json")
    client.force_login(clinic_admin)

    page = client.get("/admin/clinic/auditevent/?action=lot.recalled").content.decode()

    assert "lot.recalled" in page
    assert "patients who received it: 2" in page


# --- lifting a recall that is not there ---------------------------------------------------------


@pytest.fixture
def lifted_lot(clinic_a, clinic_admin):
    with time_machine.travel(RECALLED_AT, tick=False):
        lot = LotFactory(product=ProductFactory(clinic=clinic_a), recalled=True, recall_reason=RECALL_REASON)
    response = _api(clinic_admin).patch(
        f"/api/v1/lots/{lot.pk}/", {"recalled": False, "recall_lift_reason": LIFT_REASON}, format="json"
    )
    assert response.status_code == 200
    return lot


@pytest.mark.parametrize("body", [
    {"recalled": False, "recall_lift_reason": LIFT_REASON},
    {"recall_lift_reason": LIFT_REASON},
    {"recalled": False, "recall_lift_reason": LIFT_REASON, "storage_checks": "Checked again"},
])
def test_lifting_a_recall_already_lifted_is_refused_and_records_nothing(clinic_admin, lifted_lot, body):
    history, log = lifted_lot.history.count(), AuditEvent.objects.count()

    response = _api(clinic_admin).patch(f"/api/v1/lots/{lifted_lot.pk}/", body, format="json")

    assert response.status_code == 409
    assert response.json()["detail"] == "This lot is not recalled; nothing to lift."
    assert (lifted_lot.history.count(), AuditEvent.objects.count()) == (history, log)
    assert AuditEvent.objects.filter(action=LIFT_ACTION).count() == 1
    assert ProductLot.objects.get(pk=lifted_lot.pk).storage_checks == ""


def test_a_lot_never_recalled_has_no_recall_to_lift(clinic_admin, clinic_a):
    lot = LotFactory(product=ProductFactory(clinic=clinic_a))

    response = _api(clinic_admin).patch(
        f"/api/v1/lots/{lot.pk}/", {"recalled": False, "recall_lift_reason": LIFT_REASON}, format="json"
    )

    assert response.status_code == 409
    assert not AuditEvent.objects.filter(action=LIFT_ACTION).exists()


def test_an_unrecalled_lot_saves_as_usual_without_a_lift_reason(clinic_admin, lifted_lot):
    response = _api(clinic_admin).patch(
        f"/api/v1/lots/{lifted_lot.pk}/", {"recalled": False, "recall_lift_reason": "", "storage_checks": "4 °C"},
        format="json",
    )

    assert response.status_code == 200
    assert ProductLot.objects.get(pk=lifted_lot.pk).storage_checks == "4 °C"
