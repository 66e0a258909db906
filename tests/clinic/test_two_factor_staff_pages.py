"""The second factor guards every staff page, not only the admin: photos, thumbnails, timelines and certificates.

A session signed in with the password alone, in a clinic that requires two
factors, is sent to the code step and back to the file; the views refuse it
on their own too, so a staff route that the middleware's paths miss is still
closed.  Signing in and out, patient links and the API keep their own rules.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.contrib import admin
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import Http404
from django.test import RequestFactory
from django.urls import resolve, reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from PIL import Image

from clinic.models import Role
from clinic.two_factor import STAFF_PATHS
from patients.links import create_link, token_for
from patients.models import OutcomeAssessment, PatientLink
from patients.photos import store_photo
from protocols.defaults import install_example_protocols
from tests.factories import PASSWORD, ClinicFactory, LotFactory, ProductFactory, TreatmentFactory, staff
from tests.security.routes import all_routes

pytestmark = pytest.mark.django_db

#: Each /staff/ route, with the kind of file it serves once the second factor is done.
STAFF_FILES = {
    "patients:photo-download": "image/jpeg",
    "patients:photo-thumbnail": "image/jpeg",
    "protocols:version-timeline": "image/svg+xml",
    "protocols:lot-certificate": "application/pdf",
}

#: Routes outside STAFF_PATHS, and the check each keeps for itself.
OWN_CHECKS = {
    "/healthz": "liveness probe; no data",
    "/api/": "DRF: IsClinicStaff refuses a session without its second factor; tokens need a code",
    "/p/": "patient links: the signed token is the credential, no staff session involved",
}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.AXES_ENABLED = False


@pytest.fixture
def strict_clinic():
    return ClinicFactory(name="Strict Clinic", slug="strict", require_two_factor=True)


@pytest.fixture
def doctor(strict_clinic):
    user = staff(Role.CLINICIAN, strict_clinic, username="strictdoc")
    TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    return user


@pytest.fixture
def treatment(strict_clinic):
    ended = timezone.now() - dt.timedelta(days=3, hours=6)
    return TreatmentFactory(screening__patient__clinic=strict_clinic, started_at=ended - dt.timedelta(hours=1),
                            ended_at=ended)


@pytest.fixture
def staff_file_paths(strict_clinic, doctor, treatment):
    """The path of one file of the strict clinic behind each /staff/ route."""
    assessment = OutcomeAssessment.objects.create(treatment=treatment, time_point_day=3, erythema=2)
    photo = store_photo(assessment=assessment, photo=_jpeg(), uploaded_by=doctor)
    version = install_example_protocols(clinic=strict_clinic)["microneedling"]
    lot = LotFactory(product=ProductFactory(clinic=strict_clinic),
                     certificate=SimpleUploadedFile("coa.pdf", b"%PDF-1.4 cert", content_type="application/pdf"))
    return {
        "patients:photo-download": reverse("patients:photo-download", args=[photo.pk]),
        "patients:photo-thumbnail": reverse("patients:photo-thumbnail", args=[photo.pk]),
        "protocols:version-timeline": reverse("protocols:version-timeline", args=[version.pk]),
        "protocols:lot-certificate": reverse("protocols:lot-certificate", args=[lot.pk]),
    }


def _jpeg() -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 110)).save(buffer, format="JPEG")
    return SimpleUploadedFile("skin.jpg", buffer.getvalue(), content_type="image/jpeg")


def current_code(user) -> str:
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift):06d}"


def sign_in_with_password(client, user) -> None:
    assert client.post("/admin/login/", {"username": user.username, "password": PASSWORD}).status_code == 302


@pytest.mark.parametrize("route", STAFF_FILES)
def test_it_sends_a_password_only_session_to_the_code_instead_of_serving_the_file(
    client, doctor, staff_file_paths, route
):
    path = staff_file_paths[route]
    sign_in_with_password(client, doctor)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/two-factor/verify/?next={path}"


@pytest.mark.parametrize(("route", "content_type"), STAFF_FILES.items())
def test_it_serves_the_file_after_the_code_and_returns_to_it(client, doctor, staff_file_paths, route, content_type):
    path = staff_file_paths[route]
    sign_in_with_password(client, doctor)
    verified = client.post(f"/admin/two-factor/verify/?next={path}", {"code": current_code(doctor)})
    assert verified["Location"] == path
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)


#: What each view answers a session the admin site refuses: photos hide that they exist, the others ask to sign in.
REFUSALS = {
    "patients:photo-download": 404,
    "patients:photo-thumbnail": 404,
    "protocols:version-timeline": 302,
    "protocols:lot-certificate": 302,
}


@pytest.mark.parametrize(("route", "refusal"), REFUSALS.items())
def test_the_views_refuse_a_password_only_session_even_without_the_middleware(doctor, staff_file_paths, route, refusal):
    # As if the view were mounted where the middleware does not look: the admin site's check alone must hold.
    request = RequestFactory().get(staff_file_paths[route])
    request.user = doctor
    request.user.is_verified = lambda: False
    assert _status(request) == refusal


def _status(request) -> int:
    match = resolve(request.path)
    try:
        return match.func(request, *match.args, **match.kwargs).status_code
    except Http404:
        return 404


def test_the_admin_site_lets_in_a_verified_session_and_staff_of_relaxed_clinics(doctor, clinic_a):
    request = RequestFactory().get("/staff/")
    request.user = doctor
    request.user.is_verified = lambda: True
    assert admin.site.has_permission(request)
    request.user = staff(Role.CLINICIAN, clinic_a, username="relaxed")
    assert admin.site.has_permission(request)
    request.user = AnonymousUser()
    assert not admin.site.has_permission(request)


def test_a_password_only_session_is_sent_from_the_sign_in_page_to_the_code(client, doctor):
    sign_in_with_password(client, doctor)
    page = client.get("/admin/login/", follow=True)
    assert page.redirect_chain[-1][0] == "/admin/two-factor/verify/?next=/admin/"
    assert "not authorized" not in page.content.decode()


def test_a_password_only_session_can_still_sign_out(client, doctor):
    sign_in_with_password(client, doctor)
    response = client.post("/admin/logout/")
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_patient_links_and_the_api_keep_their_own_answers(client, doctor, treatment):
    link = create_link(patient=treatment.patient, purpose=PatientLink.Purpose.SELF_REPORT, treatment=treatment,
                       time_point_day=3)
    sign_in_with_password(client, doctor)
    assert client.get(reverse("patients:link", kwargs={"token": token_for(link)})).status_code == 200
    assert client.get("/api/v1/patients/").status_code == 403


def test_every_route_is_a_guarded_staff_path_or_has_its_own_check():
    unguarded = [
        route.template for route in all_routes()
        if route.template != "/" and not route.template.startswith((*STAFF_PATHS, *OWN_CHECKS))
    ]
    assert unguarded == [], "a new route: serve it under a staff path, or say here what protects it"
