"""Which address a request came from, when reverse proxies may stand in front of gunicorn.

Behind a proxy ``REMOTE_ADDR`` is the proxy's own address, the same for every
visitor, so rate limits and login lockouts keyed on it would be shared by
everyone.  Each proxy appends the address it was connected from to
``X-Forwarded-For``; with ``AFTERCARE_TRUSTED_PROXIES`` = N proxies in front,
the client's address is therefore the N-th entry from the right.  Everything
left of it was written by the client (or by proxies we do not run) and is
never believed.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address, or None if the request carries no valid one.

    Used by the patient-link rate limit, the token sign-in throttle and
    django-axes (``AXES_CLIENT_IP_CALLABLE``), so all three count the same client.
    """
    connected_from = _valid_address(request.META.get("REMOTE_ADDR", ""))
    trusted_proxies = settings.AFTERCARE_TRUSTED_PROXIES
    if trusted_proxies == 0:
        return connected_from
    forwarded = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(forwarded) < trusted_proxies:
        # Fewer hops than proxies: a proxy was bypassed or does not append, so
        # whatever the header holds may come from the client.
        return connected_from
    return _valid_address(forwarded[-trusted_proxies]) or connected_from


def _valid_address(text: str) -> str | None:
    # Normalised, so two spellings of one IPv6 address ("2001:DB8::1", "2001:db8:0::1")
    # share one budget; None for anything else, as axes stores the value in an IP column.
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
