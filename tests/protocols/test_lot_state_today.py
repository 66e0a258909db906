"""A lot's state today (usable, not received yet, expired, recalled) is judged on its clinic's calendar.

At 23:30 UTC on 1 June it is already 2 June, 09:30, in Sydney: a lot received on
2 June is usable there, and one whose expiry day was 1 June has expired.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from rest_framework.test import APIClient

from clinic.models import Role
from protocols.lot_states import state_today
from tests.factories import ClinicFactory, LotFactory, ProductFactory, staff

pytestmark = pytest.mark.django_db
SYDNEY_MORNING = dt.datetime(2026, 6, 1, 23, 30, tzinfo=dt.UTC)  # 2 June, 09:30 in Sydney


@pytest.fixture(autouse=True)
def server_in_utc(settings):
    settings.TIME_ZONE = "UTC"


@pytest.fixture
def sydney():
    return ClinicFactory(name="Bondi Skin", slug="bondi", time_zone="Australia/Sydney")


@pytest.fixture
def sydney_and_london(sydney, clinic_a):
    """Someone whose staff pages are on UTC: they work in two time zones."""
    person = staff(Role.CLINICIAN, sydney, username="two_zones")
    person.memberships.create(clinic=clinic_a, role=Role.CLINICIAN)
    return person


@pytest.fixture
def sydney_lots(sydney):
    product = ProductFactory(clinic=sydney, name="Sydney serum")
    return {
        "arrived_today": LotFactory(product=product, lot_number="ARRIVED", received_date=dt.date(2026, 6, 2),
                                    expiry_date=dt.date(2027, 1, 1)),
        "expired_yesterday": LotFactory(product=product, lot_number="EXPIRED", expiry_date=dt.date(2026, 6, 1)),
        "next_year": LotFactory(product=product, lot_number="FUTURE", received_date=dt.date(2027, 6, 1),
                                expiry_date=dt.date(2028, 1, 1)),
        "recalled": LotFactory(product=product, lot_number="RECALLED", received_date=dt.date(2027, 6, 1),
                               expiry_date=dt.date(2028, 1, 1), recalled=True, recall_reason="Cold chain broken"),
    }


def test_it_names_each_state_on_the_clinics_calendar(sydney_lots):
    states = {name: state_today(lot, now=SYDNEY_MORNING) for name, lot in sydney_lots.items()}

    assert states == {
        "arrived_today": "usable", "expired_yesterday": "expired", "next_year": "not_received", "recalled": "recalled",
    }


@time_machine.travel(SYDNEY_MORNING, tick=False)
def test_the_api_says_a_lot_not_received_yet_is_not_received(sydney, sydney_lots):
    api = APIClient()
    api.force_authenticate(staff(Role.CLINICIAN, sydney, username="sydney_clinician"))

    body = api.get("/api/v1/lots/").json()

    states = {lot["lot_number"]: lot["state"] for lot in body["results"]}
    assert states == {"ARRIVED": "usable", "EXPIRED": "expired", "FUTURE": "not_received", "RECALLED": "recalled"}


@time_machine.travel(SYDNEY_MORNING, tick=False)
def test_the_apis_expired_filter_reads_the_clinics_calendar(sydney, sydney_lots):
    api = APIClient()
    api.force_authenticate(staff(Role.CLINICIAN, sydney, username="sydney_clinician"))

    expired = [lot["lot_number"] for lot in api.get("/api/v1/lots/?expired=true").json()["results"]]
    kept = {lot["lot_number"] for lot in api.get("/api/v1/lots/?expired=false").json()["results"]}

    assert expired == ["EXPIRED"]
    assert kept == {"ARRIVED", "FUTURE", "RECALLED"}


@time_machine.travel(SYDNEY_MORNING, tick=False)
def test_the_admin_list_gives_each_lots_state_on_its_clinics_calendar(client, sydney_and_london, sydney_lots):
    client.force_login(sydney_and_london)

    page = client.get("/admin/protocols/productlot/").content.decode()

    assert "Lot FUTURE was not received until 2027-06-01." in page
    assert "Lot EXPIRED expired on 2026-06-01." in page
    assert "Lot ARRIVED was not received" not in page


@pytest.mark.parametrize(("state", "shown"), [
    ("usable", {"ARRIVED"}),
    ("not_received", {"FUTURE", "RECALLED"}),
    ("expired", {"EXPIRED"}),
    ("recalled", {"RECALLED"}),
])
@time_machine.travel(SYDNEY_MORNING, tick=False)
def test_the_admin_lists_state_filter_reads_the_clinics_calendar(client, sydney_and_london, sydney_lots, state, shown):
    client.force_login(sydney_and_london)

    response = client.get(f"/admin/protocols/productlot/?state={state}")

    assert {lot.lot_number for lot in response.context["cl"].result_list} == shown


@time_machine.travel(SYDNEY_MORNING, tick=False)
def test_the_products_page_gives_each_lots_state_on_its_clinics_calendar(client, sydney_and_london, sydney_lots):
    client.force_login(sydney_and_london)
    product = sydney_lots["next_year"].product

    page = client.get(f"/admin/protocols/exosomeproduct/{product.pk}/change/").content.decode()

    rows = {row.split("</a>")[0].rsplit(">", 1)[1]: row for row in page.split('<tr class="product-lot">')[1:]}
    assert "<td>Not received yet</td>" in rows["FUTURE"]
    assert "<td>Usable</td>" in rows["ARRIVED"]
    assert "<td>Expired</td>" in rows["EXPIRED"]
    assert "<td>Recalled</td>" in rows["RECALLED"]
