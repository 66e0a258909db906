"""Every URL the project serves, found by walking the URL resolver, with what each id in it refers to.

The isolation matrix asks each of these routes for another clinic's rows.
Nothing here is a hand-written list of pages: admin pages come from the admin
site's registry and ``get_urls()``, API routes from the DRF router, staff views
from the apps' ``urls.py``.  A route whose ids the matrix cannot fill raises
``UnknownParameter``, so a new kind of page fails the test until it is taught.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import models
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern
from drf_spectacular.generators import SchemaGenerator

from clinic.models import Clinic
from patients.models import (
    Export,
    Intake,
    OutcomeAssessment,
    OutcomePhoto,
    Patient,
    Reminder,
    Screening,
    Treatment,
    TreatmentArm,
)
from protocols.models import ContraindicationRule, ExosomeProduct, ProductLot, Protocol, ProtocolStep, ProtocolVersion


class UnknownParameter(LookupError):
    """A route has a path parameter the matrix does not know how to fill with another clinic's ids."""


# Path parameters that always name a row of one model, whichever page they are on.
ID_PARAMETERS: dict[str, type[models.Model]] = {
    "patient_id": Patient,
    "treatment_id": Treatment,
    "protocol_id": Protocol,
    "photo_id": OutcomePhoto,
    "export_id": Export,
    "screening_id": Screening,
    "intake_id": Intake,
    "reminder_id": Reminder,
    "report_id": OutcomeAssessment,  # a patient's self-report (its problem flag is reviewed on the treatment page)
}

# Non-admin staff views whose ``pk`` is not a viewset's: the row each one serves.
STAFF_VIEW_MODELS: dict[str, type[models.Model]] = {
    "protocols:version-timeline": ProtocolVersion,
    "protocols:lot-certificate": ProductLot,
}

# Query parameters and body fields that carry a row's id (filters, comparisons, prefills, writes), and their model.
QUERY_ID_PARAMETERS: dict[str, type[models.Model] | str] = {
    "step": ProtocolStep,
    "added_rules": ContraindicationRule,
    "removed_rules": ContraindicationRule,
    "patient": Patient,
    "treatment": Treatment,
    "protocol": Protocol,
    "protocol_version": ProtocolVersion,
    "version": ProtocolVersion,
    "screening": Screening,
    "intake": Intake,
    "assessment": OutcomeAssessment,
    "arm": TreatmentArm,
    "product": ExosomeProduct,
    "lot": ProductLot,
    "clinic": Clinic,
    "clinician": "user",
    "a": Protocol,
    "b": Protocol,
    "compare_with": Protocol,
    "against": ProtocolVersion,
    "from_version": ProtocolVersion,
}

# Routes the matrix does not ask, and why.  Everything else must be asked.
EXCLUDED: dict[str, str] = {
    "unnamed:": "a redirect from / to /admin/; no data",
    "healthz": "database and broker status; no clinic data",
    "two_factor_setup": "the signed-in person's own device enrolment",
    "two_factor_verify": "the signed-in person's own one-time code",
    "admin:login": "the sign-in form",
    "admin:logout": "signs the client out",
    "admin:password_change": "the signed-in person's own password",
    "admin:password_change_done": "a fixed confirmation page",
    "admin:jsi18n": "the admin's JavaScript translations",
    "unnamed:admin/(?P<url>.*)$": "the admin's catch-all for unknown URLs (404, or the login page)",
    "api-token": "sign-in: a password (and code) in, the caller's own token out",
    "api-schema": "the OpenAPI description, the same for everyone; no rows",
    "api-docs": "Swagger UI for the schema; no rows",
    "patients:link": "a patient's signed link: the token in it is the credential, not a staff-visible id",
    "staff_set_password": "a staff invitation's link: the token in it is the credential, not a staff-visible id",
}


@dataclass
class Route:
    """One URL pattern: how to build its path, and what its parameters mean."""

    key: str
    template: str  # the path with {parameter} placeholders, e.g. /admin/patients/patient/{object_id}/change/
    callback: Any
    params: tuple[str, ...]
    model: type[models.Model] | None = None  # the admin's or the viewset's model
    model_admin: admin.ModelAdmin | None = None
    viewset: Any = None
    actions: dict[str, str] = field(default_factory=dict)  # DRF: HTTP method -> action

    @property
    def is_admin(self) -> bool:
        return self.template.startswith("/admin/")

    @property
    def is_api(self) -> bool:
        return self.viewset is not None

    def param_model(self, param: str) -> type[models.Model] | None:
        """The model a path parameter's value is an id of (None for parameters that are not ids)."""
        if param in ID_PARAMETERS:
            return ID_PARAMETERS[param]
        if param in ("object_id", "pk", "_0") and self.model is not None:
            return self.model
        if param == "pk" and self.key in STAFF_VIEW_MODELS:
            return STAFF_VIEW_MODELS[self.key]
        return None

    def path(self, **values: Any) -> str:
        return self.template.format(**{name: values[name] for name in self.params})


# --- walking the resolver ------------------------------------------------------------------------------


def _regex_template(regex: str) -> str:
    """``^clinics/(?P<pk>[^/.]+)/$`` -> ``clinics/{pk}/``; unnamed groups become ``{_0}``, ``{_1}``."""
    out, i, unnamed = [], 0, 0
    regex = regex.removeprefix("^").removesuffix("$")
    while i < len(regex):
        char = regex[i]
        if char == "\\":
            out.append(regex[i + 1])
            i += 2
            continue
        if char != "(":
            out.append(char)
            i += 1
            continue
        depth, j = 1, i + 1
        while depth:
            depth += {"(": 1, ")": -1}.get(regex[j], 0)
            j += 1 if regex[j] != "\\" else 2
        group = regex[i + 1:j - 1]
        named = re.match(r"\?P<(\w+)>", group)
        if named:
            out.append("{" + named.group(1) + "}")
        else:
            out.append("{_" + str(unnamed) + "}")
            unnamed += 1
        i = j
    return "".join(out)


def _template(pattern: Any) -> str:
    if isinstance(pattern, RoutePattern):
        return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern))
    assert isinstance(pattern, RegexPattern), pattern
    return _regex_template(str(pattern))


def _join_route(route1: str, route2: str) -> str:
    # As django.urls.resolvers.URLResolver._join_route: the key resolve() reports for unnamed routes.
    return route2 if not route1 else route1 + route2.removeprefix("^")


def _walk(patterns: list[Any], prefix: str = "/", route: str = "", namespace: str = "") -> list[Route]:
    found = []
    for entry in patterns:
        template = prefix + _template(entry.pattern)
        joined = _join_route(route, str(entry.pattern))
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}".strip(":") if entry.namespace else namespace
            found += _walk(entry.url_patterns, template, joined, inner)
            continue
        assert isinstance(entry, URLPattern)
        name = f"{namespace}:{entry.name}".strip(":") if entry.name else ""
        key = name or f"unnamed:{joined}"
        params = tuple(re.findall(r"{(\w+)}", template))
        found.append(Route(key=key, template=template, callback=entry.callback, params=params))
    return found


def _admin_models() -> dict[str, tuple[type[models.Model], admin.ModelAdmin]]:
    return {
        f"/admin/{model._meta.app_label}/{model._meta.model_name}/": (model, model_admin)
        for model, model_admin in admin.site._registry.items()
    }


def _describe(route: Route, admin_models: dict[str, tuple[type[models.Model], admin.ModelAdmin]]) -> None:
    for prefix, (model, model_admin) in admin_models.items():
        if route.template.startswith(prefix):
            route.model, route.model_admin = model, model_admin
    viewset = getattr(route.callback, "cls", None)
    actions = getattr(route.callback, "actions", None)
    if viewset is not None and actions is not None:
        route.viewset, route.actions = viewset, dict(actions)
        queryset = getattr(viewset, "queryset", None)
        route.model = queryset.model if queryset is not None else _viewset_model(route)


def _viewset_model(route: Route) -> type[models.Model] | None:
    """Plain ViewSets have no queryset; their ``pk`` is named by the route (a protocol's report is a protocol)."""
    return {"protocol-report-detail": Protocol}.get(route.key)


@cache
def all_routes() -> tuple[Route, ...]:
    """Every route, once: DRF's ``.json`` suffix twins share their route's name and view, so they are folded in."""
    admin_models = _admin_models()
    routes: dict[str, Route] = {}
    for route in _walk(get_resolver().url_patterns):
        if route.key in routes:
            continue
        _describe(route, admin_models)
        routes[route.key] = route
    return tuple(routes.values())


def route(key: str) -> Route:
    return next(r for r in all_routes() if r.key == key)


def query_model(name: str) -> type[models.Model] | None:
    found = QUERY_ID_PARAMETERS.get(name)
    return get_user_model() if found == "user" else found


# --- the API's own description of its parameters ------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One API operation as the OpenAPI schema describes it: its query parameters and request body."""

    query: tuple[str, ...]
    body: dict[str, Any] | None


def _normal(path: str) -> str:
    return re.sub(r"{\w+}", "{}", path)


@cache
def api_operations() -> dict[tuple[str, str], Operation]:
    """Every operation of the schema at /api/schema/, by (path with ``{}`` for parameters, method)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema.get("components", {}).get("schemas", {})
    operations = {}
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            query = tuple(p["name"] for p in operation.get("parameters", []) if p["in"] == "query")
            content = (operation.get("requestBody") or {}).get("content", {})
            body = content.get("application/json", {}).get("schema")
            operations[(_normal(path), method.upper())] = Operation(query, _resolved(body, components, depth=4))
    return operations


def _resolved(node: Any, components: dict[str, Any], *, depth: int) -> Any:
    """The schema with its ``$ref``s replaced by the components they name (to ``depth`` levels)."""
    if depth < 0 or not isinstance(node, dict | list):
        return node
    if isinstance(node, list):
        return [_resolved(item, components, depth=depth) for item in node]
    if "$ref" in node:
        return _resolved(components[node["$ref"].rsplit("/", 1)[-1]], components, depth=depth - 1)
    return {key: _resolved(value, components, depth=depth) for key, value in node.items()}


def api_operation(route: Route, method: str) -> Operation:
    return api_operations().get((_normal(route.template), method), Operation((), None))
