"""Every page carries the security headers; no inline script is allowed by the policy, and none is in our templates."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.two_factor import qr_svg

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


# --- no inline script anywhere in our templates (the CSP above would block it) --------------------------

ROOT = Path(__file__).resolve().parents[2]
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc\s*=)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE | re.DOTALL)
SCRIPT_URL = re.compile(r"""(?:href|src|action)\s*=\s*["']?\s*javascript:""", re.IGNORECASE)


def _our_templates() -> list[Path]:
    folders = [ROOT / "templates", *(ROOT / app / "templates" for app in ("clinic", "protocols", "patients"))]
    return sorted(path for folder in folders if folder.is_dir() for path in folder.rglob("*.html"))


def inline_script_problems(html: str) -> list[str]:
    return [match.group(0)[:80] for pattern in (INLINE_SCRIPT, EVENT_HANDLER, SCRIPT_URL) for match in pattern.finditer(html)]


@pytest.mark.parametrize("html", [
    "<script>alert(1)</script>", '<SCRIPT type="module">x()</SCRIPT>', '<button onclick="go()">',
    '<img\n src="x.png" onerror="steal()">', '<a href="javascript:void(0)">',
])
def test_the_scan_finds_inline_scripts_and_event_handlers(html):
    assert inline_script_problems(html)


def test_the_scan_allows_script_files_and_words_that_merely_start_with_on():
    assert not inline_script_problems('<script src="/static/admin/review.js" defer></script><p class="one">online</p>')


def test_no_template_of_ours_has_an_inline_script_or_event_handler():
    templates = _our_templates()
    assert len(templates) > 20  # the scan looks where the templates are
    problems = {str(path.relative_to(ROOT)): inline_script_problems(path.read_text()) for path in templates}
    assert {path: found for path, found in problems.items() if found} == {}


def test_the_two_factor_qr_code_we_mark_safe_is_only_svg_paths(clinician):
    # Why the nosec on mark_safe in clinic/two_factor.py holds: no text of the user's reaches the markup.
    clinician.username = '<script>alert("x")</script>'
    device = TOTPDevice(user=clinician, name="phone", confirmed=False)

    svg = qr_svg(device)

    assert set(re.findall(r"<(\w+)", svg)) == {"svg", "path"}
    assert "script" not in svg


# --- HSTS and the other production-only protections ---------------------------------------------------------


def test_production_settings_turn_on_hsts_secure_cookies_and_the_ssl_redirect():
    code = ("import django, json; django.setup(); from django.conf import settings as s; print(json.dumps([s.SECURE_HSTS_SECONDS,"
            " s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE,"
            " s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER]))")
    result = _production_python(code)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [31536000, True, True, True, True, True, ["HTTP_X_FORWARDED_PROTO", "https"]]


@override_settings(SECURE_HSTS_SECONDS=31536000, SECURE_HSTS_INCLUDE_SUBDOMAINS=True, SECURE_HSTS_PRELOAD=True)
def test_it_sends_hsts_on_https_requests(client):
    response = client.get("/healthz", secure=True)

    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def _production_python(code: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with a complete production environment (DEBUG off) plus ``variables``."""
    env = {key: value for key, value in os.environ.items() if key not in {"DEBUG", "DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update({
        "DEBUG": "false", "SECRET_KEY": "p" * 60, "ALLOWED_HOSTS": "aftercare.example.org",
        "SITE_URL": "https://aftercare.example.org", "DATABASE_URL": "sqlite:////tmp/aftercare-headers-test.sqlite3",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0", "EMAIL_URL": "smtp://mail.example.org:587",
        "DEFAULT_FROM_EMAIL": "care@example.org", "DJANGO_SETTINGS_MODULE": "clinic.settings",
        "AFTERCARE_VAR_DIR": "/tmp/aftercare-headers-test-var", **variables,
    })
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
