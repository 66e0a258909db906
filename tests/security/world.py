"""Two clinics with a month of realistic data each, built with the demo builders, for the isolation matrix.

Each clinic carries a tag in everything that identifies it or its people —
patient references, family names and emails, staff usernames, the clinic's
name, protocol and product names, lot numbers, its own rules, certificates,
notes — so a response that shows any of clinic B's data to clinic A's staff
is found by one search for B's tag.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import models
from django.db.models.functions import Concat
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from PIL import Image
from rest_framework.authtoken.models import Token

from clinic.demo import DemoClinicSpec, install_demo_clinic, install_demo_content
from clinic.models import Clinic, Role
from patients import exports
from patients.models import AdverseEvent, Export, OutcomeAssessment, Screening, StaffAlert, Treatment
from patients.outcomes import record_adverse_event
from patients.photos import prepare_photo, store_photo
from patients.screenings import override_screening
from protocols import versioning
from protocols.defaults import customise_default_rule
from protocols.models import ContraindicationRule, ExosomeProduct, ProductLot, Protocol, Severity

CLINIC_A = DemoClinicSpec(slug="ashgrove", name="Ashgrove Skin Clinic", staff_prefix="ashgrove", tag="Ashgrove")
CLINIC_B = DemoClinicSpec(
    slug="zebquill", name="Zebquill Dermatology", staff_prefix="zebquill", time_zone="America/New_York", tag="Zebquill",
)
ROLES: tuple[str, ...] = (Role.CLINIC_ADMIN, Role.CLINICIAN, Role.COORDINATOR, Role.AUDITOR)


@dataclass
class World:
    """What was built: both clinics and their staff by role."""

    a: Clinic
    b: Clinic
    staff_a: dict[str, Any]
    staff_b: dict[str, Any]

    @property
    def tag_a(self) -> str:
        return CLINIC_A.tag

    @property
    def tag_b(self) -> str:
        return CLINIC_B.tag


def build_world() -> World:
    clinics = [_build_clinic(spec) for spec in (CLINIC_A, CLINIC_B)]
    (a, staff_a), (b, staff_b) = clinics
    return World(a=a, b=b, staff_a=staff_a, staff_b=staff_b)


def _build_clinic(spec: DemoClinicSpec) -> tuple[Clinic, dict[str, Any]]:
    summary = install_demo_clinic(spec)
    install_demo_content(summary)
    clinic = summary.clinic
    # Real clinics require two-factor sign-in; the demo turns it off for local trials.
    Clinic.objects.filter(pk=clinic.pk).update(require_two_factor=True)
    clinic.refresh_from_db()
    User = get_user_model()  # noqa: N806
    staff = {role: User.objects.get(username=spec.username(role)) for role in ROLES}
    _tag_protocol_content(clinic, spec.tag)
    _add_what_the_demo_leaves_out(clinic, spec.tag, staff)
    return clinic, staff


def _tag(queryset: models.QuerySet, field: str, suffix: str) -> None:
    """Append ``suffix`` to ``field`` of these rows and of their history, so old versions carry the tag too."""
    queryset.update(**{field: Concat(models.F(field), models.Value(suffix))})
    history = getattr(queryset.model, "history", None)
    if history is not None:
        ids = list(queryset.values_list("pk", flat=True))
        history.model.objects.filter(id__in=ids).update(**{field: Concat(models.F(field), models.Value(suffix))})


def _tag_protocol_content(clinic: Clinic, tag: str) -> None:
    _tag(Protocol.objects.filter(clinic=clinic), "name", f" ({tag})")
    _tag(ExosomeProduct.objects.filter(clinic=clinic), "name", f" ({tag})")
    _tag(ProductLot.objects.filter(clinic=clinic), "lot_number", f"-{tag.upper()}")


def _add_what_the_demo_leaves_out(clinic: Clinic, tag: str, staff: dict[str, Any]) -> None:
    clinician, admin = staff[Role.CLINICIAN], staff[Role.CLINIC_ADMIN]
    _certificates(clinic, tag)
    _own_rules(clinic, tag, admin)
    _override(clinic, tag, clinician)
    _adverse_event(clinic, tag, clinician)
    _photo(clinic, clinician)
    _problem_flag(clinic, tag)
    versioning.start_draft(protocol=Protocol.objects.filter(clinic=clinic).order_by("pk").first(), by=admin,
                           change_note=f"{tag} draft: longer sun avoidance")
    _finished_export(clinic, staff[Role.AUDITOR])
    _second_factors_and_tokens(staff)


def _certificates(clinic: Clinic, tag: str) -> None:
    for lot in ProductLot.objects.filter(clinic=clinic):
        body = f"%PDF-1.4\n% Certificate of analysis, lot {lot.lot_number}, {tag} pharmacy\n".encode()
        lot.certificate.save(f"coa-{lot.pk}.pdf", ContentFile(body), save=True)


def _own_rules(clinic: Clinic, tag: str, admin: Any) -> None:
    default = ContraindicationRule.objects.filter(clinic__isnull=True).order_by("code").first()
    own = customise_default_rule(rule=default, clinic=clinic, by=admin)
    own.message = f"{own.message} ({tag} house policy)"
    own.save()
    ContraindicationRule.objects.create(
        clinic=clinic, code=f"{clinic.slug}-recent-tan", fact="pregnant", severity=Severity.CAUTION,
        message=f"{tag}: ask about a recent tan before laser.",
    )


def _override(clinic: Clinic, tag: str, clinician: Any) -> None:
    screening = Screening.objects.filter(patient__clinic=clinic, outcome=Screening.Outcome.NEEDS_OVERRIDE).first()
    override_screening(screening=screening, clinician=clinician,
                       reason=f"Dermatologist letter on file at {tag}; isotretinoin stopped long enough.")


def _recorded_treatments(clinic: Clinic) -> models.QuerySet:
    return Treatment.objects.filter(clinic=clinic, status=Treatment.Status.RECORDED).order_by("ended_at")


def _adverse_event(clinic: Clinic, tag: str, clinician: Any) -> None:
    treatment = _recorded_treatments(clinic).first()
    event = record_adverse_event(
        treatment=treatment, by=clinician, kind=AdverseEvent.Kind.MILIA, severity=AdverseEvent.Severity.MILD,
        onset_date=treatment.ended_at.date() + dt.timedelta(days=5), description=f"Two milia on the chin ({tag} review)",
    )
    # An alert to clinicians that was not delivered (a mild event raises none itself), its error naming the clinic.
    StaffAlert.objects.create(clinic=clinic, kind=StaffAlert.Kind.ADVERSE_EVENT, adverse_event=event,
                              status=StaffAlert.Status.FAILED, last_error=f"The mail server refused nurse@{tag}.example")


def _photo(clinic: Clinic, clinician: Any) -> None:
    assessment = OutcomeAssessment.objects.filter(
        treatment__clinic=clinic, source=OutcomeAssessment.Source.CLINICIAN
    ).order_by("pk").first()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 110)).save(buffer, format="PNG")
    store_photo(assessment=assessment, photo=prepare_photo(ContentFile(buffer.getvalue(), name="cheek.png")),
                uploaded_by=clinician)


def _problem_flag(clinic: Clinic, tag: str) -> None:
    """A self-report whose patient ticked the problem box: the list of problems and its review button."""
    report = OutcomeAssessment.objects.filter(
        treatment__clinic=clinic, source=OutcomeAssessment.Source.PATIENT
    ).order_by("pk").first()
    report.problem_flagged, report.notes = True, f"Yellow crusts since last night ({tag})"
    report.save(update_fields=["problem_flagged", "notes"])


def _finished_export(clinic: Clinic, auditor: Any) -> None:
    request = exports.ExportRequest(clinic=clinic, identified=True)
    export = exports.start_export(user=auditor, request=request, background=True)
    exports.run_export(export.pk)  # what the worker would do; the file holds names, so it carries the tag
    assert Export.objects.get(pk=export.pk).is_downloadable


def _second_factors_and_tokens(staff: dict[str, Any]) -> None:
    for user in staff.values():
        TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
        StaticDevice.objects.create(user=user, name="Backup codes", confirmed=True)
        Token.objects.create(user=user)
