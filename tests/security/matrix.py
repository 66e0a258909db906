"""The isolation matrix: every staff route, asked by one clinic's staff for another clinic's rows.

Each route becomes probes (``probes_for``) filled with the ids of one clinic's
rows.  A probe is one of three kinds:

* ``object`` — the other clinic's id is in the path (change page, API detail,
  download, …): only 403 or 404 is acceptable, as if the row did not exist.
* ``read`` — a list or page with the other clinic's ids in the query (filters,
  prefills, comparisons, search): any answer below 500 that shows none of its
  data.
* ``write`` — a form or API write whose body points at the other clinic's rows:
  nothing is accepted (no 2xx from the API) and nothing of it is shown; that
  nothing changed is checked with a fingerprint of the clinic's data.

"Shows its data" means the clinic's tag (in every name, reference, email,
username, lot number… of that clinic) or a link to, or an API id of, one of
its rows (``Evidence``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.test import Client
from django.urls import Resolver404, resolve
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token

from clinic.admin_base import is_scoped_model
from clinic.models import AuditEvent, Clinic
from clinic.scoping import clinic_path
from tests.security.routes import EXCLUDED, Route, UnknownParameter, all_routes, api_operation, query_model

OBJECT, READ, WRITE = "object", "read", "write"
NONEXISTENT_ID = 987654321
# Query parameters that pages without an id in their path are asked with, one per request, each naming a row.
PAGE_QUERY_PARAMETERS = ("patient", "treatment", "protocol", "clinician", "clinic")
DATA_APPS = {"clinic", "protocols", "patients"}


@dataclass(frozen=True)
class Probe:
    key: str  # the route's key: what coverage is counted by
    method: str
    path: str
    kind: str
    data: Any = None
    api: bool = False  # JSON body, DRF answers

    def __str__(self) -> str:
        body = f" {json.dumps(self.data, default=str)}" if self.data else ""
        return f"{self.method} {self.path}{body}"


# --- one clinic's rows -------------------------------------------------------------------------------


class ClinicRows:
    """The ids of one clinic's rows, per model: the values probes are filled with."""

    def __init__(self, clinic: Clinic, *, per_kind: int = 2) -> None:
        self.clinic = clinic
        self.per_kind = per_kind
        self._ids: dict[type[models.Model], list[Any]] = {}
        self._as_text: dict[type[models.Model], set[str]] = {}

    def queryset(self, model: type[models.Model]) -> models.QuerySet | None:
        """This clinic's rows of ``model``; None for models that hold no clinic's data (the operator's tables)."""
        return rows_of(model, self.clinic)

    def ids(self, model: type[models.Model]) -> list[Any]:
        if model not in self._ids:
            queryset = self.queryset(model)
            self._ids[model] = [] if queryset is None else sorted(queryset.values_list("pk", flat=True).distinct())
        return self._ids[model]

    def has(self, model: type[models.Model] | None, value: Any) -> bool:
        if model is None or value is None:
            return False
        if model not in self._as_text:
            self._as_text[model] = {str(i) for i in self.ids(model)}
        return str(value) in self._as_text[model]

    def sample(self, model: type[models.Model]) -> list[Any]:
        """The first and the last row: two different rows of each kind where there are two.

        The operator's tables hold no clinic's rows; their pages are asked with any row's id (or 1), which
        clinic staff must not open either.
        """
        if is_global(model):
            return [model._default_manager.values_list("pk", flat=True).first() or 1]
        ids = self.ids(model)
        return list(dict.fromkeys([ids[0], ids[-1]]))[:self.per_kind] if ids else []

    def child(self, child: type[models.Model], parent: type[models.Model], parent_id: Any) -> Any:
        """A row of ``child`` that belongs to the ``parent`` row (e.g. a screening of this patient)."""
        rows = self.queryset(child)
        link = next((f for f in child._meta.concrete_fields if f.is_relation and f.related_model is parent), None)
        if link is not None:
            own = rows.filter(**{link.name: parent_id}).values_list("pk", flat=True).first()
            if own is not None:
                return own
        return self.ids(child)[0]

    def history_id(self, model: type[models.Model], object_id: Any) -> Any:
        history = getattr(model, "history", None)
        if history is None:
            return 1  # the model keeps no history; the page must still refuse
        return history.model.objects.filter(id=object_id).values_list("history_id", flat=True).first()


def rows_of(model: type[models.Model], clinic: Clinic) -> models.QuerySet | None:
    User = get_user_model()  # noqa: N806
    manager = model._default_manager
    if model is Clinic:
        return manager.filter(pk=clinic.pk)
    if model is User:
        return manager.filter(memberships__clinic=clinic)
    if is_scoped_model(model):
        return manager.filter(**{clinic_path(model): clinic})
    owner = next((f for f in model._meta.concrete_fields if f.is_relation and f.related_model is User), None)
    if owner is not None and owner.name == "user":  # a person's devices and tokens belong to their clinic
        return manager.filter(user__memberships__clinic=clinic)
    return None


def is_clinic_facing(model_admin: admin.ModelAdmin) -> bool:
    """One of the project's own admins (the staff interface), not a library's admin for the operator."""
    return type(model_admin).__module__.split(".")[0] in DATA_APPS


def is_global(model: type[models.Model]) -> bool:
    """A table of the operator's (celery schedules, lockouts, groups): no clinic's rows are in it."""
    return rows_of(model, Clinic(pk=0)) is None


# --- building probes --------------------------------------------------------------------------------------


def probes_for(route: Route, target: ClinicRows, requester: ClinicRows) -> list[Probe]:
    """Every request the matrix sends to ``route`` with ``target``'s ids, on behalf of ``requester``'s staff."""
    if route.key in EXCLUDED:
        return []
    if route.is_api:
        return _api_probes(route, target, requester)
    special = {
        "admin:autocomplete": _autocomplete_probes,
        "admin:view_on_site": _view_on_site_probes,
        "admin:app_list": _app_list_probes,
    }
    if route.key in special:
        return special[route.key](route, target, requester)
    if route.model_admin is not None and not route.params and route.key == _admin_name(route, "changelist"):
        return _changelist_probes(route, target)
    if route.model_admin is not None and not route.params and route.key == _admin_name(route, "add"):
        return _add_probes(route, target)
    if not route.params:
        return _page_probes(route, target, requester)
    return _object_probes(route, target, requester)


def _admin_name(route: Route, page: str) -> str:
    return f"admin:{route.model._meta.app_label}_{route.model._meta.model_name}_{page}"


def _fill(route: Route, target: ClinicRows, requester: ClinicRows) -> list[dict[str, Any]]:
    """Values for the route's path parameters: the target's rows, and mixes of the requester's and the target's."""
    id_params = [p for p in route.params if route.param_model(p) is not None]
    for param in route.params:
        if param not in id_params and param not in ("what", "_1"):
            raise UnknownParameter(f"{route.key}: the matrix does not know what {{{param}}} is ({route.template})")
    if not id_params:
        raise UnknownParameter(f"{route.key}: no parameter names a row ({route.template})")
    first, children = id_params[0], id_params[1:]
    parent_model = route.param_model(first)
    combos = []
    for parent_id in target.sample(parent_model):
        combos.append({first: parent_id, **{c: target.child(route.param_model(c), parent_model, parent_id) for c in children}})
    if children and target is not requester and requester.ids(parent_model) and target.ids(parent_model):
        own, theirs = requester.ids(parent_model)[0], target.ids(parent_model)[0]
        # Your own patient with their screening, and theirs with yours: each must fail as a whole.
        combos.append({first: own, **{c: target.child(route.param_model(c), parent_model, theirs) for c in children}})
        combos.append({first: theirs, **{c: requester.child(route.param_model(c), parent_model, own) for c in children}})
    return [filled for combo in combos for filled in _specials(route, combo, target, requester)]


def _specials(route: Route, combo: dict[str, Any], target: ClinicRows, requester: ClinicRows) -> Iterator[dict[str, Any]]:
    if "_1" in route.params:  # simple_history's revision page: object id, then one of its history ids
        yield {**combo, "_1": target.history_id(route.model, combo["_0"])}
        if target is not requester and requester.ids(route.model):
            yield {"_0": requester.ids(route.model)[0], "_1": target.history_id(route.model, combo["_0"])}
        return
    if "what" in route.params:  # a reminder's "resend" or "cancel"
        for what in ("resend", "cancel"):
            yield {**combo, "what": what}
        return
    yield combo


def _object_probes(route: Route, target: ClinicRows, requester: ClinicRows) -> list[Probe]:
    methods = ["GET"]
    if route.is_admin and not route.key.startswith("unnamed:"):
        methods.append("POST")  # admin pages act on POST: a refused POST must not act either
    probes = []
    for values in _fill(route, target, requester):
        path = route.path(**values)
        for method in methods:
            data = {"post": "yes"} if method == "POST" and route.key.endswith("_delete") else None
            probes.append(Probe(route.key, method, path, OBJECT, data))
    return probes


def _page_probes(route: Route, target: ClinicRows, requester: ClinicRows) -> list[Probe]:
    """A page with no id in its path (dashboard, review pages, charts): plain, then with each id-like query."""
    probes = [Probe(route.key, "GET", route.template, READ)]
    for name in PAGE_QUERY_PARAMETERS:
        for value in target.sample(query_model(name))[:1]:
            probes.append(Probe(route.key, "GET", f"{route.template}?{name}={value}", READ))
    theirs, own = target.sample(query_model("a"))[:1], requester.sample(query_model("a"))[:1]
    if theirs and own:
        probes.append(Probe(route.key, "GET", f"{route.template}?a={own[0]}&b={theirs[0]}", READ))
    probes.append(Probe(route.key, "GET", f"{route.template}?q={search_term(target)}", READ))
    return probes


def search_term(target: ClinicRows) -> str:
    """Part of the target's tag: it finds their rows, and a page that repeats the search does not repeat the tag."""
    return target.clinic.slug[3:]


def _related_model(model: type[models.Model], path: str) -> type[models.Model] | None:
    """The model at the end of a ``a__b__c`` relation path, or None if the path is not all relations."""
    current: Any = model
    for part in path.split("__"):
        try:
            found = current._meta.get_field(part)
        except Exception:  # noqa: BLE001 - not a field
            return None
        if not found.is_relation:
            return None
        current = found.related_model
    return current


def _changelist_probes(route: Route, target: ClinicRows) -> list[Probe]:
    model_admin, model = route.model_admin, route.model
    probes = [Probe(route.key, "GET", route.template, READ)]
    if model_admin.search_fields:
        probes.append(Probe(route.key, "GET", f"{route.template}?q={search_term(target)}", READ))
    for entry in model_admin.list_filter:
        path = entry[0] if isinstance(entry, tuple) else entry
        related = _related_model(model, path) if isinstance(path, str) else None
        for value in target.sample(related)[:1] if related else []:
            probes.append(Probe(route.key, "GET", f"{route.template}?{path}__{related._meta.pk.name}__exact={value}", READ))
    selected = target.sample(model)
    if selected:
        for action in ["delete_selected", *(a if isinstance(a, str) else a.__name__ for a in model_admin.actions or [])]:
            data = {"action": action, "_selected_action": selected, "index": 0}
            probes.append(Probe(route.key, "POST", route.template, WRITE, data))
    return probes


def _foreign_keys(model: type[models.Model], target: ClinicRows) -> dict[str, Any]:
    """Each forward relation of ``model`` filled with one of the target's rows (where the target has one)."""
    values = {}
    for model_field in [*model._meta.concrete_fields, *model._meta.many_to_many]:
        if model_field.is_relation and target.ids(model_field.related_model):
            values[model_field.name] = target.ids(model_field.related_model)[0]
    return values


def _add_probes(route: Route, target: ClinicRows) -> list[Probe]:
    probes = [Probe(route.key, "GET", route.template, READ)]
    foreign = _foreign_keys(route.model, target)
    for name, value in foreign.items():  # the admin prefills a form from the query: ?patient=<id>
        probes.append(Probe(route.key, "GET", f"{route.template}?{name}={value}", READ))
    if foreign:
        probes.append(Probe(route.key, "POST", route.template, WRITE, foreign))
    return probes


def _autocomplete_probes(route: Route, target: ClinicRows, requester: ClinicRows) -> list[Probe]:
    """Every relation of every admin model whose other end is searchable: the admin's select2 widgets."""
    probes = []
    for model, _model_admin in admin.site._registry.items():
        for model_field in [*model._meta.concrete_fields, *model._meta.many_to_many]:
            remote_admin = admin.site._registry.get(model_field.related_model) if model_field.is_relation else None
            if remote_admin is None or not remote_admin.search_fields:
                continue
            query = (f"app_label={model._meta.app_label}&model_name={model._meta.model_name}"
                     f"&field_name={model_field.name}&term={search_term(target)}")
            probes.append(Probe(route.key, "GET", f"{route.template}?{query}", READ))
    return probes


def _view_on_site_probes(route: Route, target: ClinicRows, requester: ClinicRows) -> list[Probe]:
    probes = []
    for model in admin.site._registry:
        content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
        for value in target.sample(model)[:1]:
            probes.append(Probe(route.key, "GET", route.path(content_type_id=content_type.pk, object_id=value), OBJECT))
    return probes


def _app_list_probes(route: Route, target: ClinicRows, requester: ClinicRows) -> list[Probe]:
    labels = sorted({model._meta.app_label for model in admin.site._registry})
    return [Probe(route.key, "GET", route.path(app_label=label), READ) for label in labels]


# --- API probes -----------------------------------------------------------------------------------------------


def _api_probes(route: Route, target: ClinicRows, requester: ClinicRows) -> list[Probe]:
    """Their ids in the path; and on the requester's own path, their ids in each id-taking query parameter and
    body field the schema lists."""
    methods = [m.upper() for m in route.actions if m in route.viewset.http_method_names]
    probes = []
    own_paths = [route.path(**values) for values in _fill(route, requester, requester)] if route.params else [route.template]
    for method in methods:
        if route.params:
            probes += [
                Probe(route.key, method, route.path(**values), OBJECT, None if method == "GET" else {}, api=True)
                for values in _fill(route, target, requester)
            ]
        elif method == "GET":
            probes.append(Probe(route.key, "GET", route.template, READ, api=True))
        operation = api_operation(route, method)
        for path in own_paths[:1]:
            for name in operation.query:
                for value in target.sample(query_model(name))[:1] if query_model(name) else []:
                    probes.append(Probe(route.key, method, f"{path}?{name}={value}", READ, api=True))
        body = _body(operation.body, target)
        if method != "GET" and body:
            probes += [Probe(route.key, method, path, WRITE, body, api=True) for path in own_paths]
    return probes


def _body(schema: Any, target: ClinicRows) -> dict[str, Any]:
    """A request body whose every id field (at any depth) names one of the target's rows."""
    data: dict[str, Any] = {}
    for name, field_schema in ((schema or {}).get("properties") or {}).items():
        if field_schema.get("readOnly"):
            continue
        model = query_model(name)
        ids = target.ids(model) if model is not None else []
        if field_schema.get("type") == "array":
            items = field_schema.get("items") or {}
            if items.get("properties"):
                nested = _body(items, target)
                if nested:
                    data[name] = [nested]
            elif ids:
                data[name] = ids[:1]
        elif field_schema.get("properties"):
            nested = _body(field_schema, target)
            if nested:
                data[name] = nested
        elif ids:
            data[name] = ids[0]
    return data


def matrix(target: ClinicRows, requester: ClinicRows) -> tuple[dict[str, list[Probe]], list[str]]:
    """Probes for every route (by key), and the routes the matrix cannot fill (a new kind of page)."""
    probes, unknown = {}, []
    for route in all_routes():
        try:
            probes[route.key] = probes_for(route, target, requester)
        except UnknownParameter as error:
            unknown.append(str(error))
    return probes, unknown


# --- asking, and judging the answer ----------------------------------------------------------------------


@dataclass
class Answer:
    probe: Probe
    role: str
    status: int
    evidence: list[str] = field(default_factory=list)
    hops: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        via = "".join(f" → {hop}" for hop in self.hops)
        found = f" — {'; '.join(self.evidence[:3])}" if self.evidence else ""
        return f"[{self.role}] {self.probe}{via} → {self.status}{found}"


def signed_in(user: Any) -> Client:
    """A browser session of ``user`` that has passed two-factor sign-in with their authenticator app."""
    client = Client(raise_request_exception=False)  # a crash is an answer (500) to report, not the end of the run
    client.force_login(user)
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift):06d}"
    response = client.post("/admin/two-factor/verify/", {"code": code, "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/", "two-factor sign-in failed"
    return client


def ask(client: Client, probe: Probe) -> tuple[Any, bytes, list[str]]:
    """Send the probe; the final response, its body, and the URLs it was redirected through."""
    if probe.api:
        body = None if probe.data is None else json.dumps(probe.data)
        response = client.generic(probe.method, probe.path, body or "", content_type="application/json")
    elif probe.method == "GET":
        response = client.get(probe.path, follow=True)
    else:
        response = client.post(probe.path, probe.data or {})
    # Reading a streamed body to its end lets the test client close it (and its file) the way a server would;
    # closing it again here would close the database connection, and with it the tests' transaction.
    content = response.getvalue()
    hops = [url for url, _status in getattr(response, "redirect_chain", [])]
    if response.has_header("Location"):
        hops.append(response["Location"])
    return response, content, hops


class Evidence:
    """Finds one clinic's data in a response: its tag, links to its rows, its rows' ids in API JSON."""

    LINK = re.compile(r"(/(?:admin|staff|api/v1)/[^\s\"'<>?#\\]*)")

    def __init__(self, rows: ClinicRows, tag: str) -> None:
        self.rows = rows
        self.tag = re.compile(re.escape(tag), re.IGNORECASE)
        self.routes = {route.key: route for route in all_routes()}

    def find(self, probe: Probe, content: bytes, hops: list[str], content_type: str) -> list[str]:
        text = content.decode("utf-8", errors="replace")
        found = []
        for where in [text, *hops]:
            match = self.tag.search(where)
            if match:
                found.append(f"{match.group(0)!r} in «{where[max(0, match.start() - 60):match.end() + 40]}»")
        sent = _path_ids(probe)
        for link in {*self.LINK.findall(text), *(link for hop in hops for link in self.LINK.findall(hop))}:
            found += self._link(link, sent)
        if content_type.startswith("application/json"):
            with contextlib.suppress(ValueError):  # a JSON content type with a body that is not JSON
                found += self._json(json.loads(text), probe)
        return found

    def _link(self, link: str, sent: set[str]) -> list[str]:
        """A link to one of the clinic's rows; links back to the very rows the request named reveal nothing."""
        named = _resolve(link)
        if named is None:
            return []
        key, values = named
        route = self.routes.get(key)
        if route is None:
            return []
        return [
            f"a link to their {route.param_model(param).__name__} {value} ({link})"
            for param, value in values.items()
            if str(value) not in sent and self.rows.has(route.param_model(param), value)
        ]

    def _json(self, node: Any, probe: Probe) -> list[str]:
        found = []
        route = self.routes.get(probe.key)
        listed = node.get("results", node) if isinstance(node, dict) else node
        if isinstance(listed, list) and route is not None:
            for item in listed:
                if isinstance(item, dict) and self.rows.has(route.model, item.get("id")):
                    found.append(f"their {route.model.__name__} {item['id']} in the list")
        for key, value in _walk_json(node):
            model = query_model(key)
            if isinstance(value, int) and not isinstance(value, bool) and self.rows.has(model, value):
                found.append(f'"{key}": {value} is theirs')
        return found


def _path_ids(probe: Probe) -> set[str]:
    named = _resolve(probe.path.split("?", 1)[0])
    return {str(value) for value in named[1].values()} if named else set()


def _walk_json(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk_json(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_json(item)


@lru_cache(maxsize=4096)
def _resolve(path: str) -> tuple[str, dict[str, Any]] | None:
    try:
        match = resolve(path)
    except Resolver404:
        return None
    key = match.view_name if match.url_name else f"unnamed:{match.route}"
    values = dict(match.kwargs)
    values.update({f"_{i}": arg for i, arg in enumerate(match.args)})
    return key, values


def judge(answer: Answer, nonexistent_status: int | None = None) -> str | None:
    """Why this answer is a leak, or None. ``nonexistent_status``: the same request for an id that does not exist."""
    probe, status = answer.probe, answer.status
    if status >= 500:
        return f"server error {status}"
    if answer.evidence:
        return "shows the other clinic's data"
    if probe.kind == OBJECT and status not in (403, 404):
        if status == 405 and nonexistent_status == 405:
            return None  # the method is refused before any row is looked up, for every id alike
        return f"status {status} for another clinic's row (only 403 or 404 may answer)"
    if probe.kind == WRITE and probe.api and 200 <= status < 300:
        return f"status {status}: the API accepted a write pointing at another clinic's rows"
    return None


def nonexistent(probe: Probe, rows: ClinicRows) -> Probe:
    """The same request with every id of ``rows``'s replaced by one that exists nowhere."""
    path = probe.path
    for model in {r.param_model(p) for r in all_routes() if r.key == probe.key for p in r.params} - {None}:
        for value in rows.ids(model):
            path = re.sub(rf"/{value}/", f"/{NONEXISTENT_ID}/", path)
    return Probe(probe.key, probe.method, path, probe.kind, probe.data, probe.api)


# --- the clinic's data, before and after -------------------------------------------------------------------


def fingerprint(clinic: Clinic) -> dict[str, str]:
    """A hash of every row of the clinic's, per model: any write into the clinic changes one."""
    models_ = [m for m in apps.get_models() if m._meta.app_label in DATA_APPS]
    prints = {}
    for model in [*models_, get_user_model(), TOTPDevice, StaticDevice, Token]:
        rows = rows_of(model, clinic)
        if rows is None:
            continue
        names = [f.attname for f in model._meta.concrete_fields]
        values = list(rows.order_by("pk").values_list(*names).distinct())
        prints[model._meta.label] = hashlib.sha256(repr(values).encode()).hexdigest()
    prints["clinic.AuditEvent (count)"] = str(AuditEvent.objects.filter(clinic=clinic).count())
    return prints
