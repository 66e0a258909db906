"""Request values must have the type the schema gives them.

DRF guesses generously: ``"1"``, ``"yes"`` and ``1`` are all true, ``0`` is
the text ``"0"``, ``"12"`` is the number 12, and of ``?plated=true&plated=x``
it reads the last.  Fuzzing the API against its own schema flagged each of
these as invalid input accepted.  A clinic's data is better served by a 400
that names the field than by a guess, so the API's serializers check types
first:

* in a JSON body, each value must be of its documented JSON type (a decimal
  may be a number or a string, as the schema says);
* in a query string or a form/multipart body, where every value is text, a
  boolean is ``true`` or ``false``, a whole number is digits, and a field is
  given once;
* a date and time says its offset from UTC (``Z``, ``+01:00``), as RFC 3339
  and the schema's ``date-time`` require: DRF would read a time without one
  as UTC, which is the clinic's clock only by chance.

``null`` is left to the field, which knows whether it may be empty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.http import QueryDict
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
_TEXT_FIELDS = (
    serializers.CharField, serializers.DateField, serializers.DateTimeField, serializers.TimeField,
    serializers.DurationField, serializers.UUIDField, serializers.IPAddressField,
)
_LIST_FIELDS = (serializers.ListField, serializers.ManyRelatedField, serializers.ListSerializer, serializers.MultipleChoiceField)


NO_OFFSET = ("Give the date and time with its offset from UTC, e.g. 2026-05-07T10:00:00+01:00 or "
             "2026-05-07T09:00:00Z: without one it would be read as UTC.")


def _datetime_error(field: serializers.Field, value: str) -> str | None:
    """A date and time without its offset; DRF's field judges the rest (a bad date, a bare date)."""
    if not isinstance(field, serializers.DateTimeField):
        return None
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:
        return None
    return NO_OFFSET if parsed is not None and parsed.tzinfo is None else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer_choices(field: serializers.ChoiceField) -> bool:
    return bool(field.choices) and all(_is_int(choice) for choice in field.choices)


def _json_type_error(field: serializers.Field, value: Any) -> str | None:
    """What is wrong with a JSON value's type for ``field``, or None."""
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(field, serializers.DecimalField):
        return None if _is_int(value) or isinstance(value, float | str) else "Must be a number."
    if isinstance(field, serializers.FloatField):
        return None if _is_int(value) or isinstance(value, float) else "Must be a number."
    if isinstance(field, serializers.IntegerField | serializers.PrimaryKeyRelatedField):
        return None if _is_int(value) else "Must be a whole number."
    if isinstance(field, _LIST_FIELDS):
        return None if isinstance(value, list) else "Must be a list."
    if isinstance(field, serializers.ChoiceField):
        if _integer_choices(field):
            return None if _is_int(value) else "Must be a whole number."
        return None if isinstance(value, str) else "Must be text."
    if isinstance(field, _TEXT_FIELDS):
        return _datetime_error(field, value) if isinstance(value, str) else "Must be text."
    if isinstance(field, serializers.DictField | serializers.Serializer):
        return None if isinstance(value, Mapping) else "Must be an object."
    return None  # JSON fields, files: any shape


def _text_error(field: serializers.Field, values: list[Any]) -> str | None:
    """What is wrong with a query-string or form value for ``field``, or None."""
    if isinstance(field, (*_LIST_FIELDS, serializers.FileField)):
        return None
    if len(values) > 1:
        return "Give one value."
    value = values[0]
    if not isinstance(value, str) or value == "":
        return None  # an empty value is "not given"; the field decides whether that is allowed
    if isinstance(field, serializers.BooleanField):
        return None if value in ("true", "false") else "Must be true or false."
    whole = isinstance(field, serializers.IntegerField | serializers.PrimaryKeyRelatedField) or (
        isinstance(field, serializers.ChoiceField) and _integer_choices(field)
    )
    if whole and not _WHOLE_NUMBER.fullmatch(value):
        return "Must be a whole number."
    return _datetime_error(field, value)


def type_errors(serializer: serializers.Serializer, data: Any) -> dict[str, list[str]]:
    """Field name → message for every given value whose type is wrong."""
    if not isinstance(data, Mapping):
        return {}
    errors = {}
    for name, field in serializer.fields.items():
        if field.read_only or name not in data:
            continue
        if isinstance(data, QueryDict):
            problem = _text_error(field, data.getlist(name))
        else:
            value = data[name]
            problem = None if value is None else _json_type_error(field, value)
        if problem:
            errors[name] = [problem]
    return errors


# No docstrings on these classes: drf-spectacular would show them as every serializer's description.
# They refuse values of the wrong type before DRF's fields coerce them (see the module docstring).
class StrictTypesMixin:

    def to_internal_value(self, data: Any) -> Any:
        errors = type_errors(self, data)  # type: ignore[arg-type]
        if errors:
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictSerializer(StrictTypesMixin, serializers.Serializer):
    pass


class StrictModelSerializer(StrictTypesMixin, serializers.ModelSerializer):
    pass
