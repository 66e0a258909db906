"""Base classes for clinic-scoped API endpoints."""

from __future__ import annotations

from typing import Any

from django.db import models
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from clinic.audit import record_viewed
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
    """

    log_views: bool = False

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        row = self.get_object()  # type: ignore[attr-defined]
        if self.log_views:
            record_viewed(request=request, action="view", obj=row)
        return Response(self.get_serializer(row).data)  # type: ignore[attr-defined]


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
