"""Settings are read from the environment and refuse bad values with the variable's name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x" * 30 + "-a-long-random-production-secret-value",
    "ALLOWED_HOSTS": "aftercare.example.org",
    "SITE_URL": "https://aftercare.example.org",
    "DATABASE_URL": "sqlite:////tmp/aftercare-settings-test.sqlite3",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "EMAIL_URL": "smtp://mail.example.org:587",
    "DEFAULT_FROM_EMAIL": "care@example.org",
}


def load_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in GOOD_PRODUCTION and k != "TIME_ZONE"}
    clean.update(env)
    clean["DJANGO_SETTINGS_MODULE"] = "clinic.settings"
    clean["AFTERCARE_VAR_DIR"] = "/tmp/aftercare-settings-test-var"
    code = "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


def test_it_runs_on_the_embedded_default_with_no_variables():
    result = load_settings({})
    assert result.returncode == 0, result.stderr
    assert "sqlite3" in result.stdout


def test_it_accepts_a_complete_production_environment():
    result = load_settings(GOOD_PRODUCTION)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SECRET_KEY", "", "SECRET_KEY must be set"),
        ("SECRET_KEY", "short", "SECRET_KEY must be a random string"),
        ("ALLOWED_HOSTS", "", "ALLOWED_HOSTS must be set"),
        ("DATABASE_URL", "", "DATABASE_URL must be set"),
        ("DATABASE_URL", "not-a-url", "DATABASE_URL must be a URL"),
        ("CELERY_BROKER_URL", "", "CELERY_BROKER_URL must be set"),
        ("CELERY_BROKER_URL", "ftp://x", "CELERY_BROKER_URL must be redis://"),
        ("EMAIL_URL", "", "EMAIL_URL must be set"),
        ("DEFAULT_FROM_EMAIL", "nobody", "DEFAULT_FROM_EMAIL must be an email address"),
        ("TIME_ZONE", "Mars/Olympus", "TIME_ZONE must be an IANA time zone"),
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("SESSION_IDLE_MINUTES", "soon", "SESSION_IDLE_MINUTES must be a whole number"),
    ],
)
def test_it_refuses_a_bad_production_value_naming_the_variable(variable, value, message):
    env = {**GOOD_PRODUCTION, variable: value}
    result = load_settings(env)
    assert result.returncode != 0
    assert message in result.stderr


def test_it_passes_the_deploy_check_in_production():
    # The browser tests' DJANGO_ALLOW_ASYNC_UNSAFE is what check --deploy warns about: production never sets it.
    clean = {k: v for k, v in os.environ.items() if k not in GOOD_PRODUCTION and k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    clean.update(GOOD_PRODUCTION, AFTERCARE_VAR_DIR="/tmp/aftercare-settings-test-var")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_old_secret_keys_can_be_kept_for_rotation():
    old_key = "o" * 60
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY_FALLBACKS)"
    env = {k: v for k, v in os.environ.items() if k not in GOOD_PRODUCTION}
    env.update(GOOD_PRODUCTION, SECRET_KEY_FALLBACKS=f"{old_key}, ", DJANGO_SETTINGS_MODULE="clinic.settings",
               AFTERCARE_VAR_DIR="/tmp/aftercare-settings-test-var")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"['{old_key}']"
