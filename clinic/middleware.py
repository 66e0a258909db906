"""Request ids (every request gets one, so an access-log entry can be tied to a server log line) and the staff pages' clock."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

#: The id of the request being handled, for code that is not handed the request
#: (a service writing to the access log): "" outside a request.
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-Id", "")
        request.request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = current_request_id.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-Id"] = request.request_id
        return response


# Staff pages: times are shown, and typed, on the clinic's clock.
_STAFF_PREFIXES = ("/admin/", "/staff/")


class ClinicTimeZoneMiddleware:
    """Show staff pages in their clinic's time zone, not the server's (UTC).

    A Sydney clinician reads a 09:30 procedure as 09:30, and a time typed in a
    form means 09:30 in Sydney. Someone whose clinics lie in several zones
    keeps UTC (the page says so): no single clock would be right for all rows.
    The zone shown is on ``request.staff_time_zone`` for the page header.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from clinic.scoping import clinic_time_zones

        if not request.path.startswith(_STAFF_PREFIXES) or not getattr(request.user, "is_staff", False):
            return self.get_response(request)
        zones = clinic_time_zones(request.user)
        zone = zones.pop() if len(zones) == 1 else "UTC"
        request.staff_time_zone = zone
        with timezone.override(ZoneInfo(zone)):
            return self.get_response(request)
