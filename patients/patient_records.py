"""Creating patient records without silently making duplicates, and finding what the access log says about one."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models.functions import Cast
from django.http import HttpRequest

from clinic.audit import record_event
from patients.models import (
    AdverseEvent,
    Intake,
    OutcomeAssessment,
    OutcomePhoto,
    Patient,
    PatientLink,
    ProblemFlag,
    Reminder,
    Screening,
    Treatment,
)

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


#: The records of a patient that access-log entries name, each with its path to the patient. An entry
#: names one record by type and id; an entry about a list names its rows in its detail (see
#: ``access_log_about``).
PATIENT_RECORDS: dict[type[models.Model], str] = {
    Intake: "patient",
    PatientLink: "patient",
    Screening: "patient",
    Treatment: "patient",
    Reminder: "treatment__patient",
    OutcomeAssessment: "treatment__patient",
    ProblemFlag: "treatment__patient",
    AdverseEvent: "treatment__patient",
    OutcomePhoto: "assessment__treatment__patient",
}


def access_log_about(*, patient_id: int) -> models.Q:
    """The access-log entries whose record is the patient or one of their records (``PATIENT_RECORDS``).

    One condition with a subquery per kind of record, so the log is read in one
    query. Entries about a list of rows (an API page of patients or screenings)
    name the rows only inside their JSON detail: on PostgreSQL those that
    showed one of the patient's records are included (JSON containment, after
    one query for the records' ids); SQLite cannot search JSON by containment,
    and they are not (``list_reads_included``).
    """
    about = models.Q(object_type=Patient._meta.label_lower, object_id=str(patient_id))
    for model, path in PATIENT_RECORDS.items():
        ids = model._base_manager.filter(**{path: patient_id}).order_by().values_list(Cast("pk", models.CharField()))
        about |= models.Q(object_type=model._meta.label_lower, object_id__in=ids)
    if list_reads_included():
        for label, key in _records_of(patient_id):
            about |= models.Q(action="list", detail__objects__contains=[{"type": label, "id": key}])
    return about


def list_reads_included() -> bool:
    """Whether ``access_log_about`` finds the API list pages that showed the patient (not on SQLite)."""
    return connection.features.supports_json_field_contains


def _records_of(patient_id: int) -> list[tuple[str, str]]:
    """(type, id as text) of the patient and each of their records, as access-log entries name them; one query."""
    def named(model: type[models.Model], **where: Any) -> models.QuerySet:
        label = models.Value(model._meta.label_lower, output_field=models.CharField())
        return model._base_manager.filter(**where).order_by().values_list(label, Cast("pk", models.CharField()))

    records = [named(Patient, pk=patient_id)] + [named(m, **{path: patient_id}) for m, path in PATIENT_RECORDS.items()]
    return list(records[0].union(*records[1:], all=True))
