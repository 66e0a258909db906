"""The base every staff admin page stands on: clinic scoping and role permissions.

Django's model permissions are not used for staff; what a person may do is
decided by their role in the clinic that owns the row (``clinic.roles``).
Querysets, foreign-key choices, autocomplete results and list-filter choices
all go through ``clinic.scoping.scoped``, so no page shows another clinic's rows.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.filters import RelatedOnlyFieldListFilter
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import Http404, HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from clinic.audit import record_event
from clinic.history import HistoryChanges, changed_by_nobody_signed_in
from clinic.ids import row_id
from clinic.models import Clinic
from clinic.roles import Capability
from clinic.scoping import can, can_anywhere, clinic_ids, clinic_of, clinic_path, scoped, sees_several_clinics


def ordered(queryset: models.QuerySet) -> models.QuerySet:
    """``queryset`` in a total order: every page of it (the autocomplete's too) is stable.

    The changelist replaces this order with the one the user sorts by.
    """
    return queryset if queryset.ordered else queryset.order_by("pk")


def is_scoped_model(model: type[models.Model]) -> bool:
    if model is Clinic:
        return True
    path = clinic_path(model)
    try:
        field = model._meta.get_field(path.split("__")[0])
    except Exception:  # noqa: BLE001 - a model without a clinic path is not tenant data
        return False
    return field.is_relation


class ScopedRawIdWidget(ForeignKeyRawIdWidget):
    """A raw-id input that names the chosen row only if it is one of the field's (scoped) choices.

    Django's widget looks the typed or prefilled id up in the whole table to
    print its label, so ``?treatment=<id>`` would show another clinic's row.
    """

    def __init__(self, *args: Any, queryset: models.QuerySet, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queryset = queryset

    def label_and_url_for_value(self, value: Any) -> tuple[str, str]:
        key = self.rel.get_related_field().name
        try:
            visible = self.queryset.filter(**{key: value}).exists()
        except (ValueError, TypeError, ValidationError):
            visible = False
        return super().label_and_url_for_value(value) if visible else ("", "")


def scoped_widget(formfield: Any) -> Any:
    """Swap Django's raw-id widget for the scoped one on a foreign-key form field."""
    widget = getattr(formfield, "widget", None)
    if isinstance(widget, ForeignKeyRawIdWidget) and not isinstance(widget, ScopedRawIdWidget):
        formfield.widget = ScopedRawIdWidget(widget.rel, widget.admin_site, queryset=formfield.queryset, using=widget.db)
    return formfield


class ClinicScopedAdmin(SimpleHistoryAdmin):
    """Admin for a model whose rows belong to one clinic."""

    #: capability needed to add or change a row
    change_capability: Capability = Capability.EDIT_PATIENTS
    #: capability needed to delete a row; None means nobody deletes through the app
    delete_capability: Capability | None = None
    #: log every viewing of a change page to the access log (patient-data models)
    log_views: bool = False
    #: log every look at a row's history (its list and each past version); None: as ``log_views``
    log_history_views: bool | None = None

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return scoped(super().get_queryset(request), request.user)

    def get_search_results(self, request: HttpRequest, queryset: models.QuerySet, search_term: str) -> tuple:
        # The autocomplete pages what this returns; a queryset annotated in
        # get_queryset (GROUP BY) has lost the model's default order.
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return ordered(queryset), may_have_duplicates

    # --- permissions ------------------------------------------------------
    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_anywhere(request.user, Capability.VIEW)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return can_anywhere(request.user, Capability.VIEW)
        return can(request.user, Capability.VIEW, clinic_of(obj))

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return can_anywhere(request.user, self.change_capability)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return can_anywhere(request.user, self.change_capability)
        clinic = clinic_of(obj)
        return clinic is not None and can(request.user, self.change_capability, clinic) or (
            clinic is None and request.user.is_superuser
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if self.delete_capability is None:
            return False
        if obj is None:
            return can_anywhere(request.user, self.delete_capability)
        clinic = clinic_of(obj)
        return clinic is not None and can(request.user, self.delete_capability, clinic)

    # --- choices ----------------------------------------------------------
    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        related = db_field.remote_field.model
        if related is Clinic:
            kwargs["queryset"] = scoped(Clinic.objects.all(), request.user, self.change_capability)
            editable = clinic_ids(request.user, self.change_capability)
            if len(editable) == 1 and not request.user.is_superuser:
                kwargs.setdefault("initial", next(iter(editable)))  # staff of one clinic need not choose it
        elif is_scoped_model(related):
            # Narrow a subclass's own choices further, never widen them back to the whole table.
            kwargs["queryset"] = scoped(kwargs.get("queryset", related._default_manager.all()), request.user)
        return scoped_widget(super().formfield_for_foreignkey(db_field, request, **kwargs))

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        related = db_field.remote_field.model
        if is_scoped_model(related):
            kwargs["queryset"] = scoped(related._default_manager.all(), request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        # A plain related filter lists every row of the related table; the
        # "related only" filter lists values present in the scoped queryset.
        # A filter by clinic is left out for someone who sees one clinic only: it would offer that one clinic.
        several_clinics = self.lists_several_clinics(request)
        filters: list[Any] = []
        for entry in super().get_list_filter(request):
            related = self._related_model(entry) if isinstance(entry, str) else None
            if related is Clinic and not several_clinics:
                continue
            filters.append((entry, RelatedOnlyFieldListFilter) if related is not None else entry)
        return filters

    def lists_several_clinics(self, request: HttpRequest) -> bool:
        """May this list hold more than one clinic's rows for ``request.user``?"""
        return sees_several_clinics(request.user)

    def _related_model(self, path: str) -> type[models.Model] | None:
        """The model a relation path (``"treatment__patient"``) ends at; None for any other path."""
        model: Any = self.model
        for part in path.split("__"):
            try:
                field = model._meta.get_field(part)
            except Exception:  # noqa: BLE001
                return None
            if not field.is_relation:
                return None
            model = field.related_model
        return model

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], add: bool = False, change: bool = False,
        form_url: str = "", obj: Any = None,
    ) -> Any:
        # Only a GET is a look at the record; a POST that re-renders with
        # errors was already logged when the page was first opened.
        if self.log_views and change and obj is not None and request.method == "GET":
            record_event(actor=request.user, action="view", clinic=clinic_of(obj), obj=obj, request=request)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def _get_obj_does_not_exist_redirect(self, request: HttpRequest, opts: Any, object_id: str) -> Any:
        # Django redirects to the index for a missing row; another clinic's row
        # must look exactly like one that does not exist: a plain 404.
        raise Http404("Not found")

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        # simple_history looks the object up unscoped; check it here first.
        obj = self.get_object_or_403(request, object_id)
        if not hasattr(self.model._meta, "simple_history_manager_attribute"):
            # A model that keeps no history of its own (the reminder outbox, the access log): the
            # admin's own change log, where simple_history's page would crash.
            response = admin.ModelAdmin.history_view(self, request, object_id, extra_context)
            response.template_name = "admin/object_history.html"  # not simple_history's, which needs its rows
        else:
            response = super().history_view(request, object_id, extra_context)
        # The history names every value the record ever held: looking at it is looking at the record.
        if self.logs_history_views():
            record_event(actor=request.user, action="history.view", clinic=clinic_of(obj), obj=obj, request=request)
        return response

    def logs_history_views(self) -> bool:
        return self.log_views if self.log_history_views is None else self.log_history_views

    def get_historical_record_context_helper(self, request: HttpRequest, historical_record: Any) -> HistoryChanges:
        return HistoryChanges(self.model, historical_record)

    def set_history_delta_changes(self, request: HttpRequest, historical_records: Any, **kwargs: Any) -> None:
        super().set_history_delta_changes(request, historical_records, **kwargs)
        # Read by templates/simple_history/object_history_list.html when nobody signed in made the change.
        for record in historical_records:
            record.changed_by_nobody = changed_by_nobody_signed_in(record)

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: Any = None
    ) -> Any:
        # One past version of a row: the row must be in reach (simple_history looks it up unscoped),
        # and a model that keeps no history has no such page (simple_history would crash on it).
        obj = self.get_object_or_403(request, object_id)
        if not hasattr(self.model._meta, "simple_history_manager_attribute"):
            raise Http404("This record keeps no history.")
        # The page is for reading. simple_history saves whatever is posted to it
        # ("revert") having checked only that the person may view the record, and
        # through the bare form: none of the checks of the record's own page or its
        # services run. Restoring an old value is an edit, made on the record's page.
        if request.method not in ("GET", "HEAD"):
            raise PermissionDenied(
                "A past version can be read, not saved back. To restore a value, edit the record itself; "
                "the change is kept in its history."
            )
        if row_id(version_id) is None:
            raise Http404("Not found")
        response = super().history_form_view(request, object_id, version_id, extra_context)
        if self.logs_history_views():  # the whole record as it was: logged like a look at its own page
            record_event(actor=request.user, action="history.revision_view", clinic=clinic_of(obj), obj=obj,
                         detail={"history_id": row_id(version_id)}, request=request)
        return response

    def render_history_view(self, request: HttpRequest, template: str, context: dict[str, Any], **kwargs: Any) -> Any:
        # simple_history renders a past version as an editable form whatever the viewer may do. For someone
        # who may not change the record it reads as the record's own page does for them: values, no inputs.
        adminform = context.get("adminform")
        if adminform is not None and not self.has_change_permission(request, context["original"]):
            context["adminform"] = helpers.AdminForm(
                adminform.form, adminform.fieldsets, {}, readonly_fields=flatten_fieldsets(adminform.fieldsets),
                model_admin=self,
            )
        return super().render_history_view(request, template, context, **kwargs)

    def get_object_or_403(self, request: HttpRequest, object_id: str) -> models.Model:
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404("Not found")
        return obj


class ScopedInline(admin.TabularInline):
    """An inline whose foreign-key choices are scoped like its parent's."""

    extra = 0

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        related = db_field.remote_field.model
        if is_scoped_model(related):
            kwargs["queryset"] = scoped(kwargs.get("queryset", related._default_manager.all()), request.user)
        return scoped_widget(super().formfield_for_foreignkey(db_field, request, **kwargs))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_anywhere(request.user, Capability.VIEW)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        capability = getattr(self, "change_capability", Capability.EDIT_PATIENTS)
        if obj is None:
            return can_anywhere(request.user, capability)
        return can(request.user, capability, clinic_of(obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
