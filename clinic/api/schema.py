"""The OpenAPI schema tells the truth about errors, times and shared rows.

drf-spectacular documents the success response of each operation only.  A
client (and schemathesis, which fuzzes the API in CI against this schema)
must also know the errors every operation can answer with, and their shapes:

* ``400`` — the request was refused and nothing changed: a JSON object of
  field name → list of messages (``non_field_errors`` for the request as a
  whole), or ``detail`` when the body could not be parsed at all;
* ``403`` — not signed in, or no role in a clinic that allows this;
* ``404`` — no such row among those you may see (another clinic's rows are
  "not found" too), or a page past the end of a list;
* ``429`` — too many attempts (token sign-in), with ``Retry-After``.

An optional query parameter given empty (``?date_to=``) is the same as one
left out; the schema marks them ``allowEmptyValue``.

A decimal is written in responses as a string ("2.50", exact); a request may
give it as a string or a JSON number, and the request schema says both.

Times of day are written ``HH:MM[:ss]`` on the clinic's or patient's clock.
JSON Schema's ``time`` format means an RFC 3339 time *with* an offset, which
these are not, so they are documented with a pattern instead.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

TIME_OF_DAY_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$"

VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Field name → list of messages; non_field_errors for the request as a whole; "
                   "detail when the body could not be read.",
    "properties": {
        "detail": {"type": "string"},
        "non_field_errors": {"type": "array", "items": {"type": "string"}},
    },
    # A nested field's errors are a list of messages, a list with one entry per
    # item (nested rows) or an object keyed by position (list fields).
    "additionalProperties": {"anyOf": [{"type": "array"}, {"type": "object"}]},
}


class ErrorDetailSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="Why the request was refused.")


class AftercareAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the error responses each operation can give."""

    def get_operation(self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any) -> dict | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True  # ?date_to= is the same as leaving it out
        responses = operation["responses"]
        for code, response in self._error_responses(operation).items():
            if code not in responses:
                responses[code] = response
            elif "content" not in responses[code] and "content" in response:
                # A view's own description of this error, with the body every such error has.
                responses[code]["content"] = response["content"]
        return operation

    def _error_responses(self, operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
        responses: dict[str, dict[str, Any]] = {}
        query = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
        if self.method != "GET" or query:
            responses["400"] = {
                "description": "The request was refused; nothing changed.",
                "content": {"application/json": {"schema": VALIDATION_ERROR_SCHEMA}},
            }
        if getattr(self.view, "permission_classes", None):
            responses["403"] = self._detail_response("403", "Not signed in, or your role does not allow this.")
        if "{" in self.path or self._is_paginated_list():
            responses["404"] = self._detail_response("404", "No such row among those you may see, or no such page.")
        if getattr(self.view, "throttle_classes", None):
            responses["429"] = self._detail_response("429", "Too many attempts; wait for the number of seconds in Retry-After.")
        return responses

    def _detail_response(self, code: str, description: str) -> dict[str, Any]:
        response = self._get_response_for_code(ErrorDetailSerializer, code)
        response["description"] = description
        return response

    def _is_paginated_list(self) -> bool:
        return self.method == "GET" and self._is_list_view() and self._get_paginator() is not None


class TimeOfDayExtension(OpenApiSerializerFieldExtension):
    """``HH:MM[:ss]`` on a local clock, without an offset (see the module docstring)."""

    target_class = "rest_framework.fields.TimeField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        schema.pop("format", None)
        schema["pattern"] = TIME_OF_DAY_PATTERN
        schema.setdefault("example", "21:00")
        return schema


class SharedRowClinicExtension(OpenApiSerializerFieldExtension):
    """A clinic id to write, and null when reading a shared row (default rule, shared template or product)."""

    target_class = "clinic.api.base.SharedRowClinicField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "response":
            schema["nullable"] = True
        return schema


class DecimalExtension(OpenApiSerializerFieldExtension):
    """A decimal: a string in responses, a string or a number in requests (see the module docstring)."""

    target_class = "rest_framework.fields.DecimalField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction != "request" or schema.get("type") != "string":
            return schema
        as_text = {key: schema.pop(key) for key in ("type", "format", "pattern") if key in schema}
        as_number: dict[str, Any] = {"type": "number"}
        field = self.target
        if field.max_digits is not None and field.decimal_places is not None:
            largest = 10 ** (field.max_digits - field.decimal_places) - 10 ** -field.decimal_places
            as_number.update(minimum=-largest, maximum=largest)
        for bound, key in ((field.min_value, "minimum"), (field.max_value, "maximum")):
            if bound is not None:
                as_number[key] = float(bound)
        return {**schema, "oneOf": [as_number, as_text]}
