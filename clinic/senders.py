"""Who an email says it is from: the clinic's sender name at Aftercare's own address (DEFAULT_FROM_EMAIL)."""

from __future__ import annotations

from email.utils import formataddr, parseaddr

from django.conf import settings

from clinic.models import Clinic


def clinic_sender(clinic: Clinic) -> str:
    """The From of every email sent for ``clinic``: "Harbour Skin Clinic <aftercare@…>"."""
    _name, address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    return formataddr((clinic.sender_name or clinic.name, address))
