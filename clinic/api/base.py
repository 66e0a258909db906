"""Base classes for clinic-scoped API endpoints."""

from __future__ import annotations

from typing import Any

from django.db import models
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from clinic.audit import record_listed, record_viewed
from clinic.models import Clinic
from clinic.roles import Capability
from clinic.scoping import scoped


class ScopedViewSetMixin:
    """Every queryset goes through ``scoped``; writes need ``write_capability``."""

    write_capability: Capability | None = None
    action_capabilities: dict[str, Capability] = {}

    def get_queryset(self) -> models.QuerySet:
        return scoped(super().get_queryset(), self.request.user)  # type: ignore[misc]


class ViewLoggingMixin:
    """With ``log_views = True``, each read of one row is written to the access log as ``"view"``.

    That is the entry the admin writes when its page for the row is opened
    (``ClinicScopedAdmin.log_views``), so auditors find a look through either under one name.

    With ``log_lists = True``, each page of the list is written as ``"list"``
    (``clinic.audit.record_listed``): one entry per clinic whose rows are on the
    page, with the filters used and the rows shown.  Only a page that is
    answered is logged: a refused request (403) or a bad filter or page (400,
    404) fails before any row is read, and shows none.
    """

    log_views: bool = False
    log_lists: bool = False

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        row = self.get_object()  # type: ignore[attr-defined]
        if self.log_views:
            record_viewed(request=request, action="view", obj=row)
        return Response(self.get_serializer(row).data)  # type: ignore[attr-defined]

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not self.log_lists:
            return super().list(request, *args, **kwargs)  # type: ignore[misc]
        queryset = self.filter_queryset(self.get_queryset())  # type: ignore[attr-defined]
        page = self.paginate_queryset(queryset)  # type: ignore[attr-defined]
        rows = list(queryset) if page is None else list(page)
        data = self.get_serializer(rows, many=True).data  # type: ignore[attr-defined]
        record_listed(
            request=request, model=queryset.model, rows=rows, filters=list_filters(request, self.paginator),  # type: ignore[attr-defined]
            page=self.paginator.page.number if page is not None else None,  # type: ignore[attr-defined]
        )
        return self.get_paginated_response(data) if page is not None else Response(data)  # type: ignore[attr-defined]


def list_filters(request: Request, paginator: Any) -> dict[str, str | list[str]]:
    """The query parameters of a list request but its page number: a value, or the values of one given several times."""
    skip = {getattr(paginator, "page_query_param", None)}
    return {
        name: values[0] if len(values) == 1 else values
        for name, values in sorted(request.query_params.lists()) if name not in skip
    }


class ScopedReadOnlyViewSet(ScopedViewSetMixin, ViewLoggingMixin, viewsets.ReadOnlyModelViewSet):
    pass


class ScopedModelViewSet(ScopedViewSetMixin, ViewLoggingMixin, viewsets.ModelViewSet):
    http_method_names = ["get", "post", "put", "patch", "head", "options"]


class ScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related field whose choices are the rows the requesting user may see."""

    def __init__(self, *, capability: Capability = Capability.VIEW, **kwargs: Any) -> None:
        self.capability = capability
        super().__init__(**kwargs)

    def get_queryset(self) -> models.QuerySet:
        queryset = super().get_queryset()
        request = self.context.get("request")
        capability = self.capability
        if queryset.model is Clinic and capability == Capability.VIEW:
            capability = getattr(self.parent, "write_capability", capability)
        return scoped(queryset, getattr(request, "user", None), capability)


class SharedRowClinicField(ScopedPrimaryKeyRelatedField):
    """The clinic of a row that may also be shared (a default rule, a shared protocol template or product).

    Writing needs one of your clinics; reading a shared row shows null, and the
    schema says so (``clinic.api.schema.SharedRowClinicExtension``).
    """
