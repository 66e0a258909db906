"""The access log's list page, for the auditor's question "who looked at this patient, and what did they do?".

Each entry names its record by type and id (``clinic.audit.record_event``).
The list filters by person, record type and patient, links each record to its
page when it still exists and the reader may open it (one query for the
whole page, whatever its length), and shows the entry's detail as short
"key: value" lines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator, capfirst

from clinic.ids import row_id
from clinic.models import AuditEvent
from clinic.roles import Capability
from clinic.scoping import clinic_ids, scoped

LIST_READS_LEFT_OUT = (
    "API list pages that showed this patient are not included (this database cannot search the rows a list "
    "entry names): search the log for the action \"list\" and open the entries of the time you are looking at."
)
#: how much of a long value (a note, a list of rows) the list page shows; the entry's own page shows it all
LIST_TEXT_CHARS = 80
LIST_ITEMS = 5


# --- filters ------------------------------------------------------------------------------------


class ActorFilter(admin.RelatedFieldListFilter):
    """The people of the clinics whose log the reader may read, former staff included; the operator sees everyone.

    Django's related filter lists every account in the database; listing the
    people found in the log instead would read the whole log on every page.
    """

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        people = get_user_model()._default_manager.all()
        if not request.user.is_superuser:
            # Any membership, active or not: someone who has left is still in the log.
            people = people.filter(memberships__clinic_id__in=clinic_ids(request.user, Capability.VIEW_AUDIT))
        name = get_user_model().USERNAME_FIELD
        return list(people.order_by(name).values_list("pk", name).distinct())


#: The apps whose records the access log names (``record_event`` writes a model's ``label_lower``), besides accounts.
RECORD_APPS = ("clinic", "protocols", "patients")


def record_types() -> list[tuple[str, str]]:
    """(label, name in words) of every kind of record an access-log entry may name, by name; no query."""
    models_named = [get_user_model()]
    for app_label in RECORD_APPS:
        # simple_history's Historical… copies and the log itself are never an entry's record.
        models_named += [m for m in apps.get_app_config(app_label).get_models()
                         if not hasattr(m, "instance_type") and m is not AuditEvent]
    choices = {m._meta.label_lower: capfirst(m._meta.verbose_name) for m in models_named}
    return sorted(choices.items(), key=lambda choice: (choice[1].lower(), choice[0]))


class RecordTypeFilter(admin.SimpleListFilter):
    """The kinds of record the app writes to the log, whether or not the reader's log has one yet.

    Listing the types present instead would be a ``SELECT DISTINCT`` over the
    clinic's whole log on every page, which no index helps.
    """

    title = "record type"
    parameter_name = "object_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return record_types()

    def queryset(self, request: HttpRequest, queryset: models.QuerySet) -> models.QuerySet:
        return queryset if self.value() is None else queryset.filter(object_type=self.value())


class PatientFilter(admin.SimpleListFilter):
    """Entries about one patient and their records (``?patient=<id>``, linked from the patient's page).

    It offers no choices of its own: a list of every patient would be long, and
    the patient's page is where the question starts.
    """

    title = "patient"
    parameter_name = "patient"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        if self.value() is None:
            return []
        from patients.models import Patient

        patient_id = self._patient_id()
        patient = model_admin.admin_site.get_model_admin(Patient).get_queryset(request).filter(pk=patient_id).first()
        # Without a choice the filter would be dropped, and the list shown unfiltered.
        return [(str(patient_id), patient.full_name if patient is not None else f"Patient {patient_id}")]

    def queryset(self, request: HttpRequest, queryset: models.QuerySet) -> models.QuerySet:
        if self.value() is None:
            return queryset
        from patients.patient_records import access_log_about

        return queryset.filter(access_log_about(patient_id=self._patient_id()))

    def _patient_id(self) -> int:
        patient_id = row_id(self.value())
        if patient_id is None:
            raise IncorrectLookupParameters(f"No such patient: {self.value()}")
        return patient_id


# --- the records an entry names ----------------------------------------------------------------


def type_name(label: str) -> str:
    """The record type ``label`` ("patients.treatment") in words ("treatment"); the label itself if unknown."""
    model = _model(label)
    return str(model._meta.verbose_name) if model is not None else label


def record_name(event: AuditEvent) -> str:
    """"Treatment 12"; "Patients (list)" for an entry about a list; "—" for an entry about no record."""
    if not event.object_type:
        return "—"
    if not event.object_id:
        model = _model(event.object_type)
        plural = model._meta.verbose_name_plural if model is not None else event.object_type
        return f"{capfirst(plural)} (list)"
    return f"{capfirst(type_name(event.object_type))} {event.object_id}"


#: Records with no admin page of their own, shown on a page under their patient's: the URL's name.
PATIENT_PAGES = {
    "patients.intake": "patients_patient_intake",
    "patients.screening": "patients_patient_screening",
}


def record_urls(events: Iterable[AuditEvent], request: HttpRequest, site: admin.AdminSite) -> dict[tuple[str, str], str]:
    """(type, id) → admin page of each record ``events`` name that still exists and the reader may open.

    One query for all of them: each type's ids are looked up among the rows
    its admin page shows the reader (so scoped exactly as the page is), and the
    lookups are joined with UNION.
    """
    wanted: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.object_type and event.object_id:
            wanted[event.object_type].add(event.object_id)
    lookups = [
        lookup for label, ids in sorted(wanted.items()) if (lookup := _lookup(label, ids, request, site)) is not None
    ]
    if not lookups:
        return {}
    found = lookups[0].union(*lookups[1:], all=True) if len(lookups) > 1 else lookups[0]
    urls = {}
    for label, key, patient_key in found:
        if label in PATIENT_PAGES:
            urls[label, key] = reverse(f"{site.name}:{PATIENT_PAGES[label]}", args=[patient_key, key])
        else:
            opts = _model(label)._meta  # type: ignore[union-attr]
            urls[label, key] = reverse(f"{site.name}:{opts.app_label}_{opts.model_name}_change", args=[key])
    return urls


def _lookup(label: str, ids: set[str], request: HttpRequest, site: admin.AdminSite) -> models.QuerySet | None:
    """(type, id, patient id) as text of the rows among ``ids`` whose page of type ``label`` the reader may open."""
    model = _model(label)
    rows = _rows_with_a_page(model, label, request, site) if model is not None else None
    if rows is None:
        return None
    keys = []
    for value in ids:
        try:
            keys.append(model._meta.pk.to_python(value))  # type: ignore[union-attr]
        except ValidationError:
            continue  # not an id of this type: nothing to link
    if not keys:
        return None
    patient_key = Cast("patient_id", models.CharField()) if label in PATIENT_PAGES else models.Value("")
    return (
        rows.filter(pk__in=keys).order_by().prefetch_related(None)
        .annotate(record_type=models.Value(label, models.CharField()), record_key=Cast("pk", models.CharField()),
                  record_patient=patient_key)
        .values_list("record_type", "record_key", "record_patient")
    )


def _rows_with_a_page(
    model: type[models.Model], label: str, request: HttpRequest, site: admin.AdminSite
) -> models.QuerySet | None:
    """The rows of ``model`` whose page the reader may open; None when there is no such page for them."""
    if label in PATIENT_PAGES:
        patient_admin = site.get_model_admin(apps.get_model("patients.patient"))
        # The page looks the row up among its patient's (scoped like the patient list).
        return scoped(model._default_manager.all(), request.user) if patient_admin.has_view_permission(request) else None
    if not site.is_registered(model):
        return None
    model_admin = site.get_model_admin(model)
    return model_admin.get_queryset(request) if model_admin.has_view_permission(request) else None


def _model(label: str) -> type[models.Model] | None:
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None


class AccessLogChangeList(ChangeList):
    """The page's rows carry the link to their record (``record_url``), looked up once for the page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        attach_record_urls(self.result_list, request, self.model_admin.admin_site)
        from patients.patient_records import list_reads_included

        if PatientFilter.parameter_name in self.params and not list_reads_included():
            messages.info(request, LIST_READS_LEFT_OUT)


def attach_record_urls(events: Sequence[AuditEvent], request: HttpRequest, site: admin.AdminSite) -> None:
    urls = record_urls(events, request, site)
    for event in events:
        event.record_url = urls.get((event.object_type, event.object_id), "")  # type: ignore[attr-defined]


def record_link(event: AuditEvent) -> str:
    url = getattr(event, "record_url", "")
    name = record_name(event)
    return format_html('<a href="{}">{}</a>', url, name) if url else name


# --- the detail ---------------------------------------------------------------------------------


def detail_lines(detail: Any, *, shorten: bool) -> SafeString | str:
    """``detail`` as escaped "key: value" lines; long texts and lists cut short when ``shorten``."""
    if not detail:
        return "—"
    if not isinstance(detail, dict):
        return _plain(detail, shorten=shorten)
    # In the order of their names, the same on every database (PostgreSQL's jsonb keeps no order), and
    # the rows an action touched last: the longest line.
    items = sorted(detail.items(), key=lambda item: (item[0] == "objects", item[0]))
    return format_html_join(
        "", "<div>{}: {}</div>", ((key.replace("_", " "), _plain(value, shorten=shorten)) for key, value in items)
    )


def _plain(value: Any, *, shorten: bool) -> str:
    if isinstance(value, dict):
        if set(value) == {"type", "id"}:  # a record, as record_event names the others an action touched
            return f"{type_name(str(value['type']))} {value['id']}"
        # A change reads old then new on every database (PostgreSQL's jsonb stores "new" before "old").
        keys = ["old", "new"] if set(value) == {"old", "new"} else list(value)
        return "(" + ", ".join(f"{key}: {_plain(value[key], shorten=shorten)}" for key in keys) + ")"
    if isinstance(value, list):
        shown = value[:LIST_ITEMS] if shorten else value
        text = ", ".join(_plain(item, shorten=shorten) for item in shown) or "none"
        return text + (f" and {len(value) - len(shown)} more" if len(value) > len(shown) else "")
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return Truncator(str(value)).chars(LIST_TEXT_CHARS) if shorten else str(value)
