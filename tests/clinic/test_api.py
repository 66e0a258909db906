"""The API skeleton: schema, docs, authentication and clinic scoping."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_it_serves_an_openapi_3_schema_and_swagger_docs(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
    assert "/api/v1/clinics/" in schema.json()["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


def test_it_refuses_anonymous_requests():
    response = APIClient().get("/api/v1/clinics/")
    assert response.status_code in (401, 403)


def test_it_accepts_a_token_and_shows_only_the_users_clinics(clinician, clinic_a, clinic_b):
    token = Token.objects.create(user=clinician)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = api.get("/api/v1/clinics/")
    assert response.status_code == 200
    assert [c["slug"] for c in response.json()["results"]] == ["harbour"]
    assert api.get(f"/api/v1/clinics/{clinic_b.pk}/").status_code == 404


def test_it_tells_a_user_their_roles(clinician):
    api = APIClient()
    api.force_authenticate(clinician)
    body = api.get("/api/v1/me/").json()
    assert body["username"] == "clinician_a"
    assert body["memberships"][0]["role"] == "clinician"


def test_it_refuses_a_user_with_no_clinic(django_user_model):
    api = APIClient()
    api.force_authenticate(django_user_model.objects.create_user("nobody", password="x" * 16))
    assert api.get("/api/v1/clinics/").status_code == 403


def test_it_exchanges_a_password_for_a_token(clinician):
    from tests.factories import PASSWORD

    response = APIClient().post("/api/v1/auth/token/", {"username": "clinician_a", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    assert response.json()["token"] == Token.objects.get(user=clinician).key


def test_it_refuses_a_wrong_password_with_a_400(clinician):
    response = APIClient().post("/api/v1/auth/token/", {"username": "clinician_a", "password": "nope"}, format="json")
    assert response.status_code == 400
    assert not Token.objects.filter(user=clinician).exists()
