"""/healthz reports the database and the broker."""

from __future__ import annotations

import pytest

from clinic.celery import app as celery_app

pytestmark = pytest.mark.django_db


def test_it_reports_healthy_on_the_embedded_default(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["database"] == "ok"
    assert response.json()["broker"] == "ok"


def test_it_reports_a_stopped_broker_as_unhealthy(client, monkeypatch):
    # Nothing listens on port 1: this is a Redis broker that is down.
    # Celery prefers the CELERY_BROKER_URL variable over its configuration, so set both.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["broker"].startswith("error")
    assert body["database"] == "ok"


def test_it_reports_a_reachable_redis_broker_as_healthy(client, monkeypatch, redis_url):
    monkeypatch.setenv("CELERY_BROKER_URL", redis_url)
    monkeypatch.setattr(celery_app.conf, "broker_url", redis_url)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["broker"] == "ok"
