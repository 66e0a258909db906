"""Query-string filters of the API.

Three rules, all found by fuzzing the API:

* A filter on a related row takes its id as a plain whole number, not a model
  choice.  A choice filter answers "not a valid choice" for an id that does not
  exist and an empty list for another clinic's row, which tells a caller which
  ids exist elsewhere; here every unknown or foreign id gives an empty list.
* Whole numbers are bounded by the database column's range.  An unbounded one
  (``?treatment=-3e224``) reached the database and crashed it with an overflow
  (a 500); now it is a 400 naming the field.
* A filter is given once, and a boolean is ``true`` or ``false``.  Django's
  filters read the last of ``?plated=true&plated=x`` and take ``?is_active=flase``
  as "no filter", so a typo silently returned every row.  An empty value
  (``?date_to=``) still means "not given", as the schema says (allowEmptyValue).
"""

from __future__ import annotations

import re
from typing import Any

import django_filters
from django import forms
from django.db import models
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.rest_framework.filterset import FILTER_FOR_DBFIELD_DEFAULTS
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError

BIGINT_MAX = 2**63 - 1
INTEGER_RANGES: dict[type[models.Field], tuple[int, int]] = {
    models.SmallIntegerField: (-(2**15), 2**15 - 1),
    models.PositiveSmallIntegerField: (0, 2**15 - 1),
    models.PositiveIntegerField: (0, 2**31 - 1),
    models.BigIntegerField: (-(2**63), BIGINT_MAX),
    models.PositiveBigIntegerField: (0, BIGINT_MAX),
    models.IntegerField: (-(2**31), 2**31 - 1),
}


class WholeNumberFilter(django_filters.Filter):
    """An integer between ``min_value`` and ``max_value``, documented with the same bounds."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, min_value: int, max_value: int, **kwargs: Any) -> None:
        super().__init__(*args, min_value=min_value, max_value=max_value, **kwargs)
        extend_schema_field({"type": "integer", "minimum": min_value, "maximum": max_value})(self)


class IdFilter(WholeNumberFilter):
    """The id of a row (its own, or a related one's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, min_value=1, max_value=BIGINT_MAX, **kwargs)


def _integer_range(field: models.Field) -> dict[str, int]:
    for field_class in type(field).__mro__:
        if field_class in INTEGER_RANGES:
            low, high = INTEGER_RANGES[field_class]
            return {"min_value": low, "max_value": high}
    raise TypeError(f"{field!r} is not an integer field")


ID = {"filter_class": IdFilter}
WHOLE_NUMBER = {"filter_class": WholeNumberFilter, "extra": _integer_range}


class ApiFilterSet(django_filters.rest_framework.FilterSet):
    """The base of every API filter set: ids and whole numbers as above, the rest as django-filter does."""

    FILTER_DEFAULTS = {
        **FILTER_FOR_DBFIELD_DEFAULTS,
        models.AutoField: ID,
        models.BigAutoField: ID,
        models.ForeignKey: ID,
        models.OneToOneField: ID,
        **dict.fromkeys(INTEGER_RANGES, WHOLE_NUMBER),
    }


class ApiFilterBackend(DjangoFilterBackend):
    """Builds ``filterset_fields`` filters on ``ApiFilterSet`` and checks the query string's shape first."""

    filterset_base = ApiFilterSet

    def get_filterset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            errors = query_errors(filterset.filters, request.query_params)
            if errors:
                raise ValidationError(errors)
        return filterset


_WHOLE_NUMBER = re.compile(r"-?[0-9]+")


def query_errors(filters: dict[str, django_filters.Filter], query: Any) -> dict[str, list[str]]:
    """Field name → message for filters given twice, and booleans or whole numbers written otherwise."""
    errors = {}
    for name, query_filter in filters.items():
        values = query.getlist(name)
        if len(values) > 1:
            errors[name] = ["Give one value."]
        elif values and values[0] != "":
            problem = _value_error(query_filter, values[0])
            if problem:
                errors[name] = [problem]
    return errors


def _value_error(query_filter: django_filters.Filter, value: str) -> str | None:
    if isinstance(query_filter, django_filters.BooleanFilter) and value not in ("true", "false"):
        return "Must be true or false."
    if isinstance(query_filter, WholeNumberFilter) and not _WHOLE_NUMBER.fullmatch(value):
        return "Must be a whole number."
    return None
