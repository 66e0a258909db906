"""Staff-only pages of the protocols app that are not admin forms: the timeline picture and lot certificates.

Both look the row up through ``clinic.scoping.scoped``, so another clinic's
staff get a 404, exactly as if the row did not exist.
"""

from __future__ import annotations

import os

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from clinic.audit import record_event
from clinic.scoping import scoped
from protocols.models import ProductLot, ProtocolVersion
from protocols.timeline_chart import render_timeline_svg


def version_timeline(request: HttpRequest, pk: int) -> HttpResponse:
    """The version's timeline as ``image/svg+xml``."""
    versions = scoped(ProtocolVersion.objects.select_related("protocol"), request.user)
    version = get_object_or_404(versions, pk=pk)
    response = HttpResponse(render_timeline_svg(version=version), content_type="image/svg+xml; charset=utf-8")
    # Opened on its own, an SVG is a document: forbid anything active in it.
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response["Cache-Control"] = "private, max-age=0"
    return response


def lot_certificate(request: HttpRequest, pk: int) -> FileResponse:
    """Download a lot's certificate of analysis; every download goes to the access log."""
    lot = get_object_or_404(scoped(ProductLot.objects.select_related("clinic"), request.user), pk=pk)
    return certificate_response(lot=lot, request=request)


def certificate_response(*, lot: ProductLot, request: HttpRequest) -> FileResponse:
    """The certificate file as an attachment (never rendered inline), logged as an access."""
    if not lot.certificate:
        raise Http404("This lot has no certificate.")
    try:
        handle = lot.certificate.open("rb")
    except FileNotFoundError:
        raise Http404("The certificate file is missing from storage.") from None
    record_event(actor=request.user, action="lot.certificate.download", clinic=lot.clinic, obj=lot, request=request)
    response = FileResponse(handle, as_attachment=True, filename=os.path.basename(lot.certificate.name))
    response["Cache-Control"] = "private, no-store"
    return response
