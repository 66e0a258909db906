"""Making and reading the signed links in patient emails.

The URL carries ``django.core.signing`` over an opaque random id; the row
holds what the link is for, when it expires and whether it was used.  A
tampered, unknown or expired token raises ``LinkError`` with a message fit
for the patient, and changes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from patients.models import Patient
from patients.models.link import PatientLink

if TYPE_CHECKING:
    from clinic.models import Clinic

_SALT = "aftercare.patient-link"


class LinkError(Exception):
    """The link cannot be used; ``str(error)`` is safe to show the patient.

    ``clinic`` is the clinic that sent a link we found (an expired one), so the
    page can carry its name and contact; None when the token names no link of ours.
    """

    def __init__(self, message: str, *, clinic: Clinic | None = None) -> None:
        super().__init__(message)
        self.clinic = clinic


def new_link(
    *,
    patient: Patient,
    purpose: str,
    valid_for: dt.timedelta | None = None,
    treatment: object | None = None,
    reminder: object | None = None,
    time_point_day: int | None = None,
) -> PatientLink:
    """A link not saved yet (a reminder's links are saved together); ``create_link`` saves one."""
    lifetime = valid_for or dt.timedelta(days=settings.AFTERCARE_SIGNED_LINK_MAX_AGE_DAYS)
    return PatientLink(
        patient=patient,
        purpose=purpose,
        treatment=treatment,
        reminder=reminder,
        time_point_day=time_point_day,
        expires_at=timezone.now() + lifetime,
    )


def create_link(
    *,
    patient: Patient,
    purpose: str,
    valid_for: dt.timedelta | None = None,
    treatment: object | None = None,
    reminder: object | None = None,
    time_point_day: int | None = None,
) -> PatientLink:
    link = new_link(patient=patient, purpose=purpose, valid_for=valid_for, treatment=treatment, reminder=reminder,
                    time_point_day=time_point_day)
    link.save()
    return link


def token_for(link: PatientLink) -> str:
    return signing.dumps(link.opaque_id, salt=_SALT, compress=False)


def url_for(link: PatientLink) -> str:
    return settings.SITE_URL + reverse("patients:link", kwargs={"token": token_for(link)})


def signed_link_id(token: str) -> str | None:
    """The opaque id in a token we signed, or None for anything else; no database query."""
    try:
        return signing.loads(token, salt=_SALT)
    except signing.BadSignature:
        return None


def read_link(token: str, *, purpose: str | None = None) -> PatientLink:
    """The link a token names, or ``LinkError`` if it is tampered, unknown or expired."""
    opaque_id = signed_link_id(token)
    if opaque_id is None:
        raise LinkError("This link is not valid. Please use the link from your most recent email.")
    link = PatientLink.objects.select_related("patient", "patient__clinic").filter(opaque_id=opaque_id).first()
    if link is None or (purpose is not None and link.purpose != purpose):
        raise LinkError("This link is not valid. Please use the link from your most recent email.")
    if link.expires_at <= timezone.now():
        clinic = link.patient.clinic
        raise LinkError(f"This link has expired. Please contact {clinic.name} at {clinic.contact_email}.", clinic=clinic)
    return link


def consume_link(link: PatientLink) -> bool:
    """Mark a single-use link used. True if this call used it, False if it was already used (or superseded)."""
    with transaction.atomic():
        changed = PatientLink.objects.filter(pk=link.pk, used_at__isnull=True, superseded_at__isnull=True).update(
            used_at=timezone.now(), use_count=1
        )
    if changed:
        link.refresh_from_db(fields=["used_at", "use_count"])
    return changed == 1
