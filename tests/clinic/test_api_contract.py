"""What fuzzing the API (tests/fuzz) found in the shared API layer, one test per finding.

Each answered something other than what the schema promises: a 500, a guess
instead of a 400, an error body of another shape, or a schema that did not
match the responses.
"""

from __future__ import annotations

import pytest
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from clinic.api.errors import field_messages
from protocols.models import ExosomeProduct
from tests.factories import PatientFactory, ProductFactory, TreatmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(clinician):
    client = APIClient()
    client.force_authenticate(clinician)
    return client


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


# --- query strings ------------------------------------------------------------------------------------


def test_it_answers_400_not_500_for_an_id_filter_beyond_the_database_range(api):
    response = api.get("/api/v1/adverse-events/", {"treatment": "-3.0603656301423487e+224"})

    assert response.status_code == 400
    assert response.json() == {"treatment": ["Must be a whole number."]}
    assert api.get("/api/v1/reminders/", {"patient": str(2**70)}).status_code == 400


def test_it_filters_by_another_clinics_id_with_an_empty_list_like_an_unknown_one(api, clinician_b):
    foreign = TreatmentFactory(screening__patient__clinic=clinician_b.memberships.get().clinic)

    for query in ({"patient": foreign.patient_id}, {"patient": 999_999}):
        response = api.get("/api/v1/treatments/", query)
        assert response.status_code == 200, query
        assert response.json()["count"] == 0


def test_it_refuses_a_boolean_filter_that_is_not_true_or_false(api, clinic_a):
    ProductFactory(clinic=clinic_a, plated=True)
    ProductFactory(clinic=clinic_a, plated=False)

    assert api.get("/api/v1/products/", {"plated": "flase"}).json() == {"plated": ["Must be true or false."]}
    assert api.get("/api/v1/products/", {"plated": "true"}).json()["count"] == ExosomeProduct.objects.filter(
        plated=True, clinic=clinic_a).count()


def test_it_refuses_a_filter_given_twice(api):
    response = api.get("/api/v1/products/?plated=true&plated=false")

    assert response.status_code == 400
    assert response.json() == {"plated": ["Give one value."]}


def test_it_takes_an_empty_query_value_as_not_given(api, clinic_a):
    PatientFactory(clinic=clinic_a)

    assert api.get("/api/v1/patients/", {"clinic": "", "date_of_birth": "", "page": ""}).json()["count"] == 1


@pytest.mark.parametrize("page", ["0", "abc", "1.5", "99999999999"])
def test_it_answers_400_naming_the_field_for_a_page_that_is_not_a_whole_number(api, page):
    response = api.get("/api/v1/patients/", {"page": page})

    assert response.status_code == 400
    assert list(response.json()) == ["page"]


def test_it_answers_404_for_a_page_past_the_end(api):
    assert api.get("/api/v1/patients/", {"page": "7"}).status_code == 404


# --- bodies --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "message"), [
    ("given_name", 0, "Must be text."),
    ("reminder_consent", "yes", "Must be true or false."),
    ("clinic", "1", "Must be a whole number."),
    ("fitzpatrick_type", "3", "Must be a whole number."),
])
def test_it_refuses_a_json_value_of_the_wrong_type_instead_of_guessing(api, clinic_a, field, value, message):
    body = {"clinic": clinic_a.pk, "given_name": "Ana", "family_name": "Silva", "date_of_birth": "1990-01-01", field: value}

    response = api.post("/api/v1/patients/", body, format="json")

    assert response.status_code == 400
    assert response.json() == {field: [message]}


def test_it_accepts_a_decimal_as_a_number_or_a_string(api, clinic_a):
    body = {"clinic": clinic_a.pk, "name": "Serum", "manufacturer": "Lab", "source": "human", "cell_type": "ADSC"}

    for low in (2, "2.5"):
        response = api.post("/api/v1/products/", {**body, "storage_min_celsius": low}, format="json")
        assert response.status_code == 201, response.json()


def test_it_refuses_a_form_boolean_that_is_not_true_or_false(api, clinic_a):
    body = {"clinic": clinic_a.pk, "name": "Serum", "manufacturer": "Lab", "source": "human", "cell_type": "ADSC",
            "plated": "0"}

    response = api.post("/api/v1/products/", body, format="multipart")

    assert response.status_code == 400
    assert response.json() == {"plated": ["Must be true or false."]}


# --- error shapes ----------------------------------------------------------------------------------------


def test_it_wraps_a_bare_field_message_in_a_list():
    assert field_messages({"code": "Taken.", "applications": [{}, {"lot": ["Expired."]}]}) == {
        "code": ["Taken."], "applications": [{}, {"lot": ["Expired."]}]}
    assert field_messages(["Whole request."]) == {"non_field_errors": ["Whole request."]}


def test_every_validation_error_is_a_list_of_messages_per_field(api, clinic_a):
    version = api.post("/api/v1/protocols/", {"clinic": clinic_a.pk, "name": "MN", "procedure": "microneedling"},
                       format="json").json()["versions"][0]

    response = api.get(f"/api/v1/protocol-versions/{version['id']}/diff/", {"against": "x"})

    assert response.status_code == 400
    assert response.json() == {"against": ["Give the id of the version to compare with."]}


@override_settings(DEBUG=False)
def test_it_answers_json_for_an_api_url_that_matches_no_route(api):
    response = api.get("/api/v1/treatments/1.5/outcomes/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_it_answers_404_not_500_for_an_id_that_is_not_a_number(api):
    assert api.post("/api/v1/contraindication-rules/null,null/customise/", {"clinic": 1}, format="json").status_code == 404
    assert api.get("/api/v1/reports/protocols/null,null/").status_code == 404


# --- the schema ------------------------------------------------------------------------------------------


def test_the_schema_documents_the_errors_each_operation_can_give(schema):
    patient = schema["paths"]["/api/v1/patients/{id}/"]
    listing = schema["paths"]["/api/v1/patients/"]["get"]
    token = schema["paths"]["/api/v1/auth/token/"]["post"]

    assert {"200", "403", "404"} <= set(patient["get"]["responses"])
    assert {"200", "400", "403", "404"} <= set(patient["patch"]["responses"])
    assert {"200", "400", "403", "404"} <= set(listing["responses"])
    assert {"200", "400", "429"} <= set(token["responses"])
    assert "security" not in token
    assert token["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Token")


def test_the_schema_writes_times_of_day_without_an_offset(schema):
    quiet_start = schema["components"]["schemas"]["Clinic"]["properties"]["quiet_hours_start"]

    assert "format" not in quiet_start
    assert quiet_start["pattern"].startswith("^([01][0-9]|2[0-3])")


def test_the_schema_says_a_shared_rows_clinic_is_null_when_read_but_needed_when_written(schema):
    components = schema["components"]["schemas"]

    assert components["ContraindicationRule"]["properties"]["clinic"]["nullable"] is True
    assert "nullable" not in components["ContraindicationRuleRequest"]["properties"]["clinic"]


def test_the_schema_gives_nested_lists_as_arrays_without_filters_or_pages(schema):
    timeline = schema["paths"]["/api/v1/treatments/{id}/timeline/"]["get"]
    intakes = schema["paths"]["/api/v1/patients/{id}/intakes/"]

    assert timeline["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert [p["name"] for p in timeline["parameters"]] == ["id"]
    assert "201" in intakes["post"]["responses"]
    assert "answers" in schema["components"]["schemas"]["IntakeRequest"]["required"]


def test_the_schema_bounds_id_filters_and_pages(schema):
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/reminders/"]["get"]["parameters"]}

    assert parameters["patient"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    assert parameters["page"]["schema"]["minimum"] == 1
    assert parameters["patient"]["allowEmptyValue"] is True


def test_the_schema_names_the_content_types_of_file_downloads(schema):
    export = schema["paths"]["/api/v1/exports/outcomes/"]["get"]["responses"]["200"]["content"]

    assert {"text/csv", "application/fhir+json"} <= set(export)
