"""``/healthz``: is the database reachable, is the broker reachable."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        return f"error: {type(exc).__name__}"
    return "ok"


def broker_status() -> str:
    from clinic.celery import app

    url = app.conf.broker_url or ""
    try:
        if url.startswith("filesystem://"):
            folder = Path(app.conf.broker_transport_options["data_folder_in"])
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".health-", delete=True):
                pass
            return "ok"
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
            conn.default_channel  # noqa: B018 - opens the channel, proving the broker answers
    except Exception as exc:  # noqa: BLE001
        return f"error: {type(exc).__name__}"
    return "ok"


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": database_status(), "broker": broker_status()}
    healthy = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if healthy else "unhealthy", **checks, "version": os.environ.get("AFTERCARE_VERSION", "dev")}
    return JsonResponse(body, status=200 if healthy else 503)


__all__ = ["healthz", "settings"]
