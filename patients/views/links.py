"""The one entry point for signed patient links; each purpose has its own handler."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.module_loading import import_string
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from clinic.client_address import client_address
from clinic.ratelimit import allow
from patients.links import LinkError, read_link, signed_link_id
from patients.models.link import PatientLink

HANDLERS: dict[str, str] = {
    PatientLink.Purpose.INTAKE: "patients.views.intake.intake_link",
    PatientLink.Purpose.DONE: "patients.views.reminders.step_done_link",
    PatientLink.Purpose.UNSUBSCRIBE: "patients.views.reminders.unsubscribe_link",
    PatientLink.Purpose.SELF_REPORT: "patients.views.self_report.self_report_link",
}


# CSRF is checked per handler below: the one-click unsubscribe handler opts
# out (mail clients POST it without a token, RFC 8058); every other one is protected.
@csrf_exempt
@never_cache
def link(request: HttpRequest, token: str) -> HttpResponse:
    if not allow(scope="patient-link", key=_rate_limit_key(request, token),
                 limit=settings.AFTERCARE_PATIENT_LINK_RATE_PER_MINUTE):
        message = "Too many attempts from your connection. Please wait a minute and try again."
        return render(request, "patient/link_error.html", {"message": message}, status=429)
    try:
        patient_link = read_link(token)
    except LinkError as error:
        # The clinic is known only for a link we found; a garbled or unknown token shows no clinic at all.
        return render(request, "patient/link_error.html", {"message": str(error), "clinic": error.clinic}, status=410)
    handler = import_string(HANDLERS[patient_link.purpose])
    if not getattr(handler, "csrf_exempt", False):
        handler = csrf_protect(handler)
    response = handler(request, patient_link)
    # The token must not leak to anything the page links to.  "strict-origin"
    # sends at most the origin, never the path; "no-referrer" would also make
    # browsers send "Origin: null" with the page's own forms, which fails CSRF.
    response["Referrer-Policy"] = "strict-origin"
    response["X-Robots-Tag"] = "noindex"
    return response


def _rate_limit_key(request: HttpRequest, token: str) -> str:
    """Whose budget a request spends: its address's, or, for a link we issued, that link's at that address.

    There is no login to lock out, so the limit is what slows an address trying
    tokens; those tokens fail the signature check and share the address's budget.
    A token we signed cannot be guessed, so each such link gets a budget of its own
    at each address: patients sharing one address (a clinic's Wi-Fi, a mobile
    carrier's NAT, a proxy nobody configured) are not refused because someone there
    sent junk or kept reloading another link, and a link forwarded elsewhere does
    not use up the patient's own.  The signature check costs no database query.
    """
    address = client_address(request) or "unknown"
    link_id = signed_link_id(token)
    return address if link_id is None else f"{address}:link:{link_id}"
