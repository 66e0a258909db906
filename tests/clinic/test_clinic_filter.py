"""The admin lists offer a filter by clinic only to someone who sees more than one clinic.

Django hides a related filter with a single choice, but a nullable clinic (shared
protocol templates, the access log) adds an empty choice, so one clinic still
showed as "By clinic: Harbour / -".
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from clinic.audit import record_event
from clinic.models import Role
from patients.models import Patient
from tests.factories import LotFactory, MembershipFactory, PatientFactory, ProtocolFactory, UserFactory, staff


def _shown_filters(client, changelist: str) -> list[str]:
    response = client.get(reverse(changelist))
    assert response.status_code == 200
    return [str(spec.title) for spec in response.context["cl"].filter_specs]


@pytest.fixture
def rows_in_both_clinics(clinic_a, clinic_b):
    for clinic in (clinic_a, clinic_b):
        PatientFactory(clinic=clinic)
        ProtocolFactory(clinic=clinic)
        LotFactory(product__clinic=clinic)
        record_event(actor=None, action="export", clinic=clinic)
    ProtocolFactory(clinic=None)  # a shared template: the protocol list's empty "clinic" choice


def test_it_hides_the_clinic_filter_of_the_patient_list_from_someone_in_one_clinic(
    client, rows_in_both_clinics, clinician
):
    client.force_login(clinician)
    shown = _shown_filters(client, "admin:patients_patient_changelist")
    assert "clinic" not in shown
    assert "consents to email reminders" in shown  # the other filters stay


def test_it_offers_the_clinic_filter_to_someone_in_two_clinics(client, rows_in_both_clinics, clinic_a, clinic_b, clinician):
    MembershipFactory(user=clinician, clinic=clinic_b, role=Role.CLINICIAN)
    client.force_login(clinician)
    body = client.get(reverse("admin:patients_patient_changelist")).content.decode()
    assert "By clinic" in body
    assert f"?clinic__id__exact={clinic_a.pk}" in body and f"?clinic__id__exact={clinic_b.pk}" in body


def test_it_keeps_the_clinic_filter_for_the_operator(clinic_a):
    request = RequestFactory().get("/admin/patients/patient/")
    request.user = UserFactory(is_superuser=True)
    filters = admin.site._registry[Patient].get_list_filter(request)
    assert any(isinstance(entry, tuple) and entry[0] == "clinic" for entry in filters)


def test_a_link_filtered_by_clinic_still_works_without_the_filter(client, clinic_a, clinician):
    PatientFactory(clinic=clinic_a, family_name="Okafor")
    client.force_login(clinician)
    response = client.get(reverse("admin:patients_patient_changelist") + f"?clinic__id__exact={clinic_a.pk}")
    assert response.status_code == 200
    assert "Okafor" in response.content.decode()


@pytest.mark.parametrize("changelist", [
    "admin:patients_patient_changelist",
    "admin:patients_export_changelist",
    "admin:protocols_productlot_changelist",
    "admin:protocols_protocol_changelist",
    "admin:clinic_membership_changelist",
    "admin:clinic_auditevent_changelist",
])
def test_no_list_filters_by_clinic_for_a_one_clinic_admin(client, rows_in_both_clinics, clinic_admin, changelist):
    staff(Role.CLINIC_ADMIN, clinic_admin.memberships.get().clinic)  # a colleague: two memberships to list
    client.force_login(clinic_admin)
    assert "clinic" not in _shown_filters(client, changelist)


def test_the_access_log_filters_by_clinic_only_when_one_reads_several_clinics_logs(
    client, rows_in_both_clinics, clinic_a, clinic_b
):
    # An admin of one clinic who is a clinician in another works in two clinics but reads one clinic's log.
    user = staff(Role.CLINIC_ADMIN, clinic_a)
    MembershipFactory(user=user, clinic=clinic_b, role=Role.CLINICIAN)
    client.force_login(user)
    assert "clinic" not in _shown_filters(client, "admin:clinic_auditevent_changelist")
    assert "clinic" in _shown_filters(client, "admin:patients_patient_changelist")


def test_the_access_log_filters_by_clinic_for_an_auditor_of_two_clinics(client, rows_in_both_clinics, clinic_a, clinic_b):
    auditor = staff(Role.AUDITOR, clinic_a)
    MembershipFactory(user=auditor, clinic=clinic_b, role=Role.AUDITOR)
    client.force_login(auditor)
    assert "clinic" in _shown_filters(client, "admin:clinic_auditevent_changelist")


def test_a_new_record_of_one_clinic_staff_starts_in_their_clinic(client, clinic_a, clinic_b, coordinator):
    client.force_login(coordinator)
    form = client.get("/admin/patients/patient/add/").context["adminform"].form
    assert form["clinic"].value() == clinic_a.pk
    assert list(form.fields["clinic"].queryset) == [clinic_a]


def test_staff_of_two_clinics_choose_the_clinic_of_a_new_record(client, clinic_a, clinic_b, coordinator):
    MembershipFactory(user=coordinator, clinic=clinic_b, role=Role.COORDINATOR)
    client.force_login(coordinator)
    form = client.get("/admin/patients/patient/add/").context["adminform"].form
    assert form["clinic"].value() is None
