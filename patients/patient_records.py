"""Creating patient records without silently making duplicates."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.http import HttpRequest

from clinic.audit import record_event
from patients.models import Patient

if TYPE_CHECKING:
    from clinic.models import Clinic


class DuplicatePatientError(ValidationError):
    """A likely duplicate exists; the caller shows it and asks the user to confirm."""

    def __init__(self, duplicates: list[Patient]) -> None:
        self.duplicates = duplicates
        names = ", ".join(f"{p.full_name} (#{p.pk})" for p in duplicates)
        super().__init__({"confirm_duplicate": f"This may be a patient already on record: {names}."})


def find_duplicates(
    *,
    clinic: Clinic,
    given_name: str,
    family_name: str,
    date_of_birth: dt.date | None,
    email: str = "",
    exclude_pk: int | None = None,
) -> list[Patient]:
    """Patients of ``clinic`` with the same name and birth date, or the same email.

    Only the one clinic is searched: a match elsewhere is another clinic's
    record and must not be revealed.
    """
    same_person = models.Q(
        given_name__iexact=given_name.strip(), family_name__iexact=family_name.strip(), date_of_birth=date_of_birth
    )
    if email and email.strip():
        same_person |= models.Q(email__iexact=email.strip())
    queryset = Patient.objects.filter(same_person, clinic=clinic)
    if exclude_pk is not None:
        queryset = queryset.exclude(pk=exclude_pk)
    return list(queryset.order_by("pk")[:5])


def create_patient(
    *,
    data: dict[str, Any],
    created_by: Any,
    confirm_duplicate: bool = False,
    request: HttpRequest | None = None,
) -> Patient:
    """Create a patient from validated field values; raise ``DuplicatePatientError`` unless confirmed."""
    if not confirm_duplicate:
        duplicates = find_duplicates(
            clinic=data["clinic"], given_name=data["given_name"], family_name=data["family_name"],
            date_of_birth=data["date_of_birth"], email=data.get("email", ""),
        )
        if duplicates:
            raise DuplicatePatientError(duplicates)
    with transaction.atomic():
        patient = Patient(**data)
        patient.full_clean()
        patient.save()
        record_patient_created(patient=patient, created_by=created_by, confirmed_duplicate=confirm_duplicate,
                               request=request)
    return patient


def record_patient_created(
    *, patient: Patient, created_by: Any, confirmed_duplicate: bool, request: HttpRequest | None = None
) -> None:
    record_event(
        actor=created_by, action="patient.create", clinic=patient.clinic, obj=patient, request=request,
        detail={"confirmed_duplicate": confirmed_duplicate},
    )


def record_patient_viewed(*, patient: Patient, viewer: Any, request: HttpRequest | None = None) -> None:
    """The access log entry for opening a patient's record."""
    record_event(actor=viewer, action="patient.view", clinic=patient.clinic, obj=patient, request=request)
