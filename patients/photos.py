"""Outcome photos: checked by reading the bytes, stored privately, served only to the clinic's staff.

An upload is trusted for nothing: not its name, not its declared content type.
Pillow decodes it; anything that is not a JPEG, PNG or WebP picture of sane
dimensions is refused before a byte is written.  The picture is then
re-encoded, which drops EXIF metadata (phones put the GPS position of the
patient's home there), and stored under ``MEDIA_ROOT`` with a random name.
``MEDIA_URL`` is not served by any URL pattern; the only way to a photo is
``download_photo``, which scopes by clinic and writes the access log.
"""

from __future__ import annotations

import io
import logging
import secrets
import warnings
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile, File
from django.http import FileResponse, Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from PIL import Image, ImageOps, UnidentifiedImageError

from clinic.audit import record_event
from clinic.roles import Capability
from clinic.scoping import can, scoped
from patients.models import OutcomeAssessment, OutcomePhoto

logger = logging.getLogger(__name__)

MAX_PHOTO_BYTES: int = getattr(settings, "AFTERCARE_PHOTO_MAX_BYTES", 15 * 1024 * 1024)
# Far above any phone camera, far below what would exhaust memory when decoded.
MAX_PIXELS = 50_000_000
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "MPO"})  # MPO: some phones' multi-picture JPEG
THUMBNAIL_BOX = (320, 320)
_UNREADABLE = (
    UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, SyntaxError, ValueError,
)
NOT_A_PHOTO = "This file is not a photo we can read. Please choose a JPEG, PNG or WebP picture."


@dataclass(frozen=True)
class PreparedPhoto:
    """A decoded, re-encoded picture ready to be stored."""

    content: bytes
    thumbnail: bytes
    content_type: str
    extension: str
    width: int
    height: int


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def prepare_photo(upload: File) -> PreparedPhoto:
    """Check an upload by decoding it, and re-encode it without metadata.

    Raises ValidationError (field ``photo``) for a file that is too large,
    empty, not an image, not an accepted format, or too many pixels.
    """
    size = upload.size or 0
    if size > MAX_PHOTO_BYTES:
        raise ValidationError({"photo": f"The photo is {_megabytes(size)}; the limit is {_megabytes(MAX_PHOTO_BYTES)}."})
    if size == 0:
        raise ValidationError({"photo": "The file is empty."})
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; treat that as a refusal too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode_and_encode(upload)
    except ValidationError:
        raise
    except _UNREADABLE:
        raise ValidationError({"photo": NOT_A_PHOTO}) from None


def _decode_and_encode(upload: File) -> PreparedPhoto:
    upload.seek(0)
    with Image.open(upload) as probe:
        if probe.format not in ACCEPTED_FORMATS:
            raise ValidationError({"photo": NOT_A_PHOTO})
        if probe.width * probe.height > MAX_PIXELS:
            raise ValidationError({"photo": "The picture has too many pixels; please send a smaller one."})
        probe.verify()  # checks the structure without decoding every pixel
    upload.seek(0)
    with Image.open(upload) as opened:
        opened.load()  # decodes every pixel: a truncated file fails here
        picture = ImageOps.exif_transpose(opened)  # keep the orientation the phone meant, then drop EXIF
    has_alpha = picture.mode in ("RGBA", "LA") or (picture.mode == "P" and "transparency" in picture.info)
    if has_alpha:
        content, content_type, extension = _encode(picture.convert("RGBA"), "PNG"), "image/png", ".png"
    else:
        content, content_type, extension = _encode(picture.convert("RGB"), "JPEG", quality=90), "image/jpeg", ".jpg"
    thumb = picture.convert("RGB")
    thumb.thumbnail(THUMBNAIL_BOX)
    return PreparedPhoto(
        content=content, thumbnail=_encode(thumb, "JPEG", quality=80), content_type=content_type,
        extension=extension, width=picture.width, height=picture.height,
    )


def _encode(picture: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def store_photo(
    *, assessment: OutcomeAssessment, photo: PreparedPhoto | File, uploaded_by: Any | None
) -> OutcomePhoto:
    """Attach a photo to an assessment. Staff need ``LOG_OUTCOMES``; ``uploaded_by=None`` means the patient."""
    if uploaded_by is not None and not can(uploaded_by, Capability.LOG_OUTCOMES, assessment.treatment.clinic_id):
        raise PermissionDenied("Only clinicians of this clinic may add photos.")
    prepared = photo if isinstance(photo, PreparedPhoto) else prepare_photo(photo)
    opaque_name = secrets.token_hex(16) + prepared.extension
    record = OutcomePhoto(
        assessment=assessment, opaque_name=opaque_name, content_type=prepared.content_type,
        size_bytes=len(prepared.content), width=prepared.width, height=prepared.height, uploaded_by=uploaded_by,
    )
    record.image.save(opaque_name, ContentFile(prepared.content), save=False)
    record.thumbnail.save(opaque_name, ContentFile(prepared.thumbnail), save=False)
    try:
        record.save()
    except Exception:
        # No row, no file: do not leave an unreferenced picture of a patient on disk.
        record.image.delete(save=False)
        record.thumbnail.delete(save=False)
        raise
    return record


# --- serving ------------------------------------------------------------------------


def _serve(request: HttpRequest, photo_id: int, *, thumbnail: bool) -> FileResponse:
    # Anonymous users and people without a role get the same 404 as a wrong
    # clinic's id: the response never says whether a photo exists.
    if not admin.site.has_permission(request):
        raise Http404("No such photo")
    photo = get_object_or_404(
        scoped(OutcomePhoto.objects.select_related("assessment__treatment"), request.user), pk=photo_id
    )
    use_thumbnail = thumbnail and bool(photo.thumbnail)
    stored = photo.thumbnail if use_thumbnail else photo.image
    try:
        handle = stored.open("rb")
    except FileNotFoundError:
        logger.error("Outcome photo %s is missing from storage (%s)", photo.pk, stored.name)
        raise Http404("No such photo") from None
    record_event(
        actor=request.user,
        action="outcome_photo.thumbnail_viewed" if use_thumbnail else "outcome_photo.downloaded",
        clinic=photo.assessment.treatment.clinic,
        obj=photo,
        request=request,
        detail={"assessment": photo.assessment_id, "treatment": photo.assessment.treatment_id},
    )
    content_type = "image/jpeg" if use_thumbnail else photo.content_type
    suffix = "-thumbnail.jpg" if use_thumbnail else (".png" if content_type == "image/png" else ".jpg")
    response = FileResponse(
        handle, as_attachment=True, filename=f"outcome-photo-{photo.pk}{suffix}", content_type=content_type
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response


@never_cache
@require_GET
def download_photo(request: HttpRequest, photo_id: int) -> FileResponse:
    """The photo itself, as an attachment, to staff of its clinic only; logged."""
    return _serve(request, photo_id, thumbnail=False)


@never_cache
@require_GET
def photo_thumbnail(request: HttpRequest, photo_id: int) -> FileResponse:
    """A small version for the admin's lists, under the same rules as the photo."""
    return _serve(request, photo_id, thumbnail=True)
