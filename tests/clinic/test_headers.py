"""Every page carries the security headers; no inline script is allowed by the policy."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/admin/login/", "/p/some-token/", "/healthz", "/api/docs/"])
def test_it_sends_security_headers(client, path):
    response = client.get(path)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] in {"same-origin", "no-referrer"}
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    script_src = next(part for part in policy.split(";") if part.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src


def test_it_tags_every_response_with_a_request_id(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="trace-12345678")
    assert response["X-Request-Id"] == "trace-12345678"
    assert len(client.get("/healthz", HTTP_X_REQUEST_ID="bad id!")["X-Request-Id"]) == 32
