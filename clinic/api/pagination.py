"""Page-number pagination whose ``?page=`` is checked like any other field.

DRF answers ``?page=abc`` with 404 "Invalid page." and quietly takes the last
of ``?page=2&page=x``; fuzzing the API flagged both.  Here a page is one whole
number from 1 to ``MAX_PAGE`` (empty means the first): anything else is a 400
naming the field, and a page past the end of the list stays a 404.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

MAX_PAGE = 2**31 - 1
_WHOLE_NUMBER = re.compile(r"[1-9][0-9]{0,9}")


class PageNumberPagination(pagination.PageNumberPagination):
    last_page_strings = ()

    def get_page_number(self, request: Request, paginator: Any) -> int:
        values = request.query_params.getlist(self.page_query_param)
        if values == [] or values == [""]:  # an empty value means "not given", as for every query parameter
            return 1
        if len(values) > 1:
            raise ValidationError({self.page_query_param: ["Give one page number."]})
        if not _WHOLE_NUMBER.fullmatch(values[0]) or int(values[0]) > MAX_PAGE:
            raise ValidationError({self.page_query_param: [f"A page is a whole number from 1 to {MAX_PAGE}."]})
        return int(values[0])

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"].update({"minimum": 1, "maximum": MAX_PAGE})
        return parameters
