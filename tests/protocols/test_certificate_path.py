"""Where a lot's certificate is stored: fuzzing found that the staff-typed lot number went into the path as is."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from protocols.models import ProductLot
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(clinician):
    client = APIClient()
    client.force_authenticate(clinician)
    return client


@pytest.mark.parametrize("lot_number", ["0" * 80, "../../etc/A 12", "LOT/2026/7"])
def test_it_stores_a_certificate_for_any_lot_number_inside_the_product_folder(api, clinic_a, settings, tmp_path,
                                                                              lot_number):
    settings.MEDIA_ROOT = tmp_path
    product = ProductFactory(clinic=clinic_a)
    pdf = SimpleUploadedFile("certificate-of-analysis.pdf", b"%PDF-1.4 certificate", content_type="application/pdf")

    response = api.post("/api/v1/lots/", {"clinic": clinic_a.pk, "product": product.pk, "lot_number": lot_number,
                                           "received_date": "2026-01-01", "expiry_date": "2027-01-01",
                                           "certificate": pdf}, format="multipart")

    assert response.status_code == 201, response.content
    name = ProductLot.objects.get(pk=response.json()["id"]).certificate.name
    assert name.startswith(f"certificates/{product.pk}/")
    assert ".." not in name and name.count("/") == 3
    assert len(name) <= 100
