"""One shape for every 400 the API gives: field name → list of messages.

Views and serializers raise ``ValidationError({"code": "…"})`` with a bare
string here and there; DRF passes that through as a string, so a client would
have to handle both.  The handler wraps such strings in a list, the shape DRF
uses everywhere else, and leaves ``detail`` (a body that could not be parsed)
and nested errors (lists and objects) as they are.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.template import loader
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.ValidationError):
        response.data = field_messages(response.data)
    return response


def field_messages(data: Any) -> dict[str, Any]:
    """``{"field": "message"}`` → ``{"field": ["message"]}``; a bare list → ``non_field_errors``."""
    if isinstance(data, list):
        return {"non_field_errors": data}
    if not isinstance(data, dict):
        return {"non_field_errors": [data]}
    return {name: [value] if isinstance(value, str) else value for name, value in data.items()}


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 for a URL no route matches: JSON under ``/api/``, so API clients get one content type."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 (a request it found suspicious, e.g. an unsafe upload name): JSON under ``/api/``."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 403 page, as a page of the staff site: its header, menu and sign-out.

    Django's own handler renders ``403.html`` with the exception alone, so the
    admin's base template fell back to "Django administration" for the header.
    Under ``/api/`` a view that is not DRF's (whose own 403 is JSON already)
    gets JSON too, like the 400 and 404 there.
    """
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
    context = {**admin.site.each_context(request), "exception": str(exception)}
    return HttpResponseForbidden(loader.render_to_string("403.html", context, request=request))
