"""An id in a URL or query string that is made of non-ASCII digits ("²", "١") is refused, never a server error.

``str.isdigit`` accepts them and ``int`` does not: each place that read an id
from a query string or URL part checked it with the one and parsed it with
the other.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import ProtocolFactory, VersionFactory

pytestmark = pytest.mark.django_db
CRAFTED = ["²", "١٢", "1²"]


@pytest.mark.parametrize("value", CRAFTED)
@pytest.mark.parametrize("path", [
    "/admin/patients/outcomeassessment/add/?treatment={}",
    "/admin/patients/adverseevent/add/?treatment={}",
    "/admin/patients/outcomeassessment/awaiting/?clinic={}",
    "/admin/patients/problemflag/?clinic={}",
    "/admin/patients/patient/?born={}",
    "/admin/patients/outcomeassessment/review/compare/?a={}&b={}",
    "/admin/patients/export/{}/history/",
    "/admin/clinic/auditevent/?patient={}",
    "/admin/clinic/membership/invite/?clinic={}",
])
def test_the_admin_refuses_it(client, clinic_admin, clinician, path, value):
    client.force_login(clinician if "add/" in path else clinic_admin)

    response = client.get(path.format(value, value))

    assert response.status_code in (200, 302, 400, 404)


@pytest.mark.parametrize("value", CRAFTED)
def test_the_api_refuses_it_with_a_clear_error(clinician, clinic_a, value):
    version = VersionFactory(protocol=ProtocolFactory(clinic=clinic_a))
    api = APIClient()
    api.force_authenticate(clinician)

    diff = api.get(f"/api/v1/protocol-versions/{version.pk}/diff/", {"against": value})
    report = api.get(f"/api/v1/reports/protocols/{version.protocol_id}/", {"compare_with": value})

    assert (diff.status_code, diff.json()["against"]) == (400, ["Give the id of the version to compare with."])
    assert (report.status_code, report.json()["compare_with"]) == (400, ["Give the id of another protocol."])
