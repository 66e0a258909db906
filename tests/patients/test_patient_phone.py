"""A patient's phone is checked as the clinic's urgent phone is (clinic.models.tenant.validate_phone).

"=1+1" was stored (and reached the recall list's phone column) while the clinic's field refused it.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from patients.models import Patient
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db
PHONE_REFUSAL = "'=1+1' is not a phone number: use only digits, spaces, +, - and parentheses, such as +44 20 7946 0000."


@pytest.mark.parametrize("typed", ["+44 20 7946 0000", "(030) 901-820", "+49 (0)30 1234-5678", "+44 7700 900123", ""])
def test_a_number_as_people_type_it_is_kept(clinic_a, typed):
    patient = PatientFactory.build(clinic=clinic_a, phone=typed)
    patient.full_clean()


@pytest.mark.parametrize(
    ("typed", "message"),
    [("=1+1", PHONE_REFUSAL), ("12345", "A phone number has 6 to 20 digits; '12345' has 5.")],
)
def test_a_bad_number_is_refused_with_the_clinics_message(clinic_a, typed, message):
    with pytest.raises(ValidationError) as refused:
        PatientFactory.build(clinic=clinic_a, phone=typed).full_clean()
    assert refused.value.message_dict["phone"] == [message]


def test_the_admin_refuses_a_formula_as_a_phone_and_saves_nothing(client, clinic_a, coordinator):
    client.force_login(coordinator)
    response = client.post(reverse("admin:patients_patient_add"), {
        "clinic": clinic_a.pk, "given_name": "Maya", "family_name": "Okafor", "date_of_birth": "1991-03-14",
        "email": "maya@mail.example", "phone": "=1+1", "preferred_language": "en", "time_zone": "",
        "fitzpatrick_type": "", "reference": "", "consent_at_0": "", "consent_at_1": "", "consent_source": "",
    })
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["phone"] == [PHONE_REFUSAL]
    assert not Patient.objects.exists()


def test_the_api_refuses_a_formula_as_a_phone_with_400_and_changes_nothing(clinic_a, coordinator):
    api = APIClient()
    api.force_authenticate(coordinator)
    response = api.post("/api/v1/patients/", {
        "clinic": clinic_a.pk, "given_name": "Maya", "family_name": "Okafor", "date_of_birth": "1991-03-14",
        "email": "maya@mail.example", "reminder_consent": False, "phone": "=1+1",
    }, format="json")
    assert response.status_code == 400
    assert response.json()["phone"] == [PHONE_REFUSAL]
    assert not Patient.objects.exists()
    patient = PatientFactory(clinic=clinic_a, phone="+44 20 7946 0000")
    response = api.patch(f"/api/v1/patients/{patient.pk}/", {"phone": "=1+1"}, format="json")
    assert response.status_code == 400
    assert Patient.objects.get(pk=patient.pk).phone == "+44 20 7946 0000"
