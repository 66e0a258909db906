"""Outcome photos: checked by decoding, stored under opaque names without metadata, served only to the clinic's staff."""

from __future__ import annotations

import datetime as dt
import io

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from clinic.models import AuditEvent, Role
from patients.models import OutcomeAssessment, OutcomePhoto
from patients.photos import MAX_PHOTO_BYTES, prepare_photo, store_photo
from tests.factories import TreatmentFactory, staff

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def setup(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "media"
    with time_machine.travel(NOW, tick=False):
        yield


def _image(image_format="JPEG", size=(80, 60), mode="RGB", exif=None):
    buffer = io.BytesIO()
    options = {"exif": exif} if exif is not None else {}
    Image.new(mode, size, (180, 90, 80) if mode == "RGB" else (180, 90, 80, 128)).save(buffer, format=image_format, **options)
    return SimpleUploadedFile(f"IMG_0001.{image_format.lower()}", buffer.getvalue(), content_type="image/jpeg")


@pytest.fixture
def assessment(clinic_a):
    ended = NOW - dt.timedelta(days=5)
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1), ended_at=ended)
    return OutcomeAssessment.objects.create(treatment=treatment, time_point_day=3, erythema=2)


@pytest.fixture
def photo(assessment, clinician):
    return store_photo(assessment=assessment, photo=_image(), uploaded_by=clinician)


def test_it_stores_a_photo_under_an_opaque_name_with_a_thumbnail(photo, settings):
    assert photo.image.name.startswith(f"photos/{photo.assessment.treatment.clinic_id}/")
    assert "IMG_0001" not in photo.image.name
    assert len(photo.opaque_name) >= 32
    assert (settings.MEDIA_ROOT / photo.image.name).exists()
    with Image.open(settings.MEDIA_ROOT / photo.thumbnail.name) as thumbnail:
        assert thumbnail.format == "JPEG"
        assert max(thumbnail.size) <= 320


def test_it_drops_exif_metadata_such_as_the_gps_position(assessment, clinician, settings):
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPSInfo: latitude
    stored = store_photo(assessment=assessment, photo=_image(exif=exif.tobytes()), uploaded_by=clinician)
    with Image.open(settings.MEDIA_ROOT / stored.image.name) as saved:
        assert not saved.getexif()


def test_it_keeps_png_transparency_as_png(assessment, clinician):
    stored = store_photo(assessment=assessment, photo=_image("PNG", mode="RGBA"), uploaded_by=clinician)
    assert stored.content_type == "image/png"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"GIF89a" + b"\0" * 100, "not a photo we can read"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "not a photo we can read"),
        (b"", "The file is empty."),
    ],
)
def test_it_refuses_what_is_not_a_photo(content, words):
    with pytest.raises(ValidationError) as raised:
        prepare_photo(SimpleUploadedFile("x.jpg", content, content_type="image/jpeg"))
    assert words in raised.value.message_dict["photo"][0]


def test_it_refuses_a_gif_even_though_pillow_reads_it():
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buffer, format="GIF")
    with pytest.raises(ValidationError):
        prepare_photo(SimpleUploadedFile("x.gif", buffer.getvalue()))


def test_it_refuses_a_truncated_jpeg():
    whole = _image(size=(400, 300)).read()
    with pytest.raises(ValidationError):
        prepare_photo(SimpleUploadedFile("x.jpg", whole[: len(whole) // 2]))


def test_it_refuses_a_file_over_the_size_limit_before_reading_it():
    huge = SimpleUploadedFile("x.jpg", b"\0" * (MAX_PHOTO_BYTES + 1))
    with pytest.raises(ValidationError) as raised:
        prepare_photo(huge)
    assert "the limit is 15.0 MB" in raised.value.message_dict["photo"][0]


def test_it_refuses_a_decompression_bomb():
    buffer = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buffer, format="PNG")  # small file, 144 megapixels
    with pytest.raises(ValidationError):
        prepare_photo(SimpleUploadedFile("x.png", buffer.getvalue()))


def test_only_clinicians_of_the_clinic_add_photos(assessment, clinic_a, clinician_b):
    with pytest.raises(PermissionDenied):
        store_photo(assessment=assessment, photo=_image(), uploaded_by=staff(Role.COORDINATOR, clinic_a))
    with pytest.raises(PermissionDenied):
        store_photo(assessment=assessment, photo=_image(), uploaded_by=clinician_b)
    assert not OutcomePhoto.objects.exists()


# --- serving ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.COORDINATOR, Role.AUDITOR, Role.CLINIC_ADMIN])
def test_staff_of_the_clinic_download_it_as_an_attachment_and_it_is_logged(client, photo, clinic_a, role):
    user = staff(role, clinic_a)
    client.force_login(user)
    response = client.get(reverse("patients:photo-download", args=[photo.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["Content-Disposition"] == f'attachment; filename="outcome-photo-{photo.pk}.jpg"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response["Cache-Control"]
    assert b"".join(response.streaming_content)[:3] == b"\xff\xd8\xff"
    event = AuditEvent.objects.get(action="outcome_photo.downloaded")
    assert (event.actor, event.clinic, event.object_id) == (user, clinic_a, str(photo.pk))


def test_a_png_is_served_with_its_stored_content_type_and_never_inline(client, assessment, clinician):
    stored = store_photo(assessment=assessment, photo=_image("PNG", mode="RGBA"), uploaded_by=clinician)
    client.force_login(clinician)

    response = client.get(reverse("patients:photo-download", args=[stored.pk]))

    assert response["Content-Type"] == stored.content_type == "image/png"
    assert response["Content-Disposition"] == f'attachment; filename="outcome-photo-{stored.pk}.png"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_thumbnail_is_served_under_the_same_rules(client, photo, clinician):
    client.force_login(clinician)
    response = client.get(reverse("patients:photo-thumbnail", args=[photo.pk]))
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == "image/jpeg"
    assert response["Content-Disposition"].startswith("attachment;")
    assert AuditEvent.objects.filter(action="outcome_photo.thumbnail_viewed").count() == 1


@pytest.mark.parametrize("url_name", ["patients:photo-download", "patients:photo-thumbnail"])
def test_another_clinics_staff_get_404(client, photo, clinician_b, url_name):
    client.force_login(clinician_b)
    response = client.get(reverse(url_name, args=[photo.pk]))
    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action__startswith="outcome_photo").exists()


@pytest.mark.parametrize("url_name", ["patients:photo-download", "patients:photo-thumbnail"])
def test_anonymous_users_get_404(client, photo, url_name):
    response = client.get(reverse(url_name, args=[photo.pk]))
    assert response.status_code == 404


def test_staff_without_a_role_and_an_unknown_id_get_404(client, photo, django_user_model):
    loner = django_user_model.objects.create_user("loner", password="x" * 16, is_staff=True)
    client.force_login(loner)
    assert client.get(reverse("patients:photo-download", args=[photo.pk])).status_code == 404
    client.force_login(photo.uploaded_by)
    assert client.get(reverse("patients:photo-download", args=[photo.pk + 1000])).status_code == 404


def test_the_media_url_serves_nothing(client, photo, clinician):
    client.force_login(clinician)
    assert client.get("/protected-media/" + photo.image.name).status_code == 404
