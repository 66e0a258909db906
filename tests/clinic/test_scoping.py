"""One scoping helper decides what a person sees; roles decide what they may change."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory

from clinic.admin_base import ClinicScopedAdmin, is_scoped_model
from clinic.models import Clinic, Membership, Role
from clinic.roles import Capability
from clinic.scoping import can, clinic_ids, clinics_for, scoped
from tests.factories import MembershipFactory, PatientFactory, staff

pytestmark = pytest.mark.django_db


def test_it_limits_querysets_to_the_users_clinics(clinician, clinic_a, clinic_b):
    mine = PatientFactory(clinic=clinic_a)
    PatientFactory(clinic=clinic_b)
    from patients.models import Patient

    assert list(scoped(Patient.objects.all(), clinician)) == [mine]
    assert list(clinics_for(clinician)) == [clinic_a]


def test_it_sees_nothing_without_an_active_membership(clinic_a, django_user_model):
    user = django_user_model.objects.create_user("former", password="x" * 16, is_staff=True)
    MembershipFactory(user=user, clinic=clinic_a, is_active=False)
    PatientFactory(clinic=clinic_a)
    from patients.models import Patient

    assert scoped(Patient.objects.all(), user).count() == 0
    assert clinic_ids(user) == set()


def test_it_gives_each_role_its_own_capabilities_per_clinic(clinic_a, clinic_b):
    person = staff(Role.CLINICIAN, clinic_a)
    MembershipFactory(user=person, clinic=clinic_b, role=Role.AUDITOR)
    assert can(person, Capability.OVERRIDE_SCREENING, clinic_a)
    assert not can(person, Capability.OVERRIDE_SCREENING, clinic_b)
    assert can(person, Capability.EXPORT, clinic_b)
    assert not can(person, Capability.EXPORT, clinic_a)


@pytest.mark.parametrize(
    ("role", "capability", "allowed"),
    [
        (Role.AUDITOR, Capability.EDIT_PATIENTS, False),
        (Role.AUDITOR, Capability.EXPORT, True),
        (Role.COORDINATOR, Capability.OVERRIDE_SCREENING, False),
        (Role.COORDINATOR, Capability.SCREEN, True),
        (Role.COORDINATOR, Capability.EXPORT, False),
        (Role.CLINICIAN, Capability.OVERRIDE_SCREENING, True),
        (Role.CLINICIAN, Capability.RECORD_TREATMENT, True),
        (Role.CLINIC_ADMIN, Capability.MANAGE_CLINIC, True),
        (Role.CLINIC_ADMIN, Capability.OVERRIDE_SCREENING, False),
    ],
)
def test_it_grants_exactly_the_documented_capabilities(clinic_a, role, capability, allowed):
    assert can(staff(role, clinic_a), capability, clinic_a) is allowed


def test_every_admin_for_clinic_data_is_clinic_scoped():
    unscoped = [
        model._meta.label
        for model, model_admin in admin.site._registry.items()
        if is_scoped_model(model) and not isinstance(model_admin, ClinicScopedAdmin)
    ]
    assert unscoped == []


# Models whose "add" is a request an auditor may make (an export job), not an edit of clinical data.
AUDITOR_MAY_ADD = {"patients.Export"}


def test_an_auditor_can_change_nothing_in_any_admin(clinic_a):
    auditor = staff(Role.AUDITOR, clinic_a)
    request = RequestFactory().get("/admin/")
    request.user = auditor
    editable = [
        model._meta.label
        for model, model_admin in admin.site._registry.items()
        if is_scoped_model(model)
        and (
            model_admin.has_change_permission(request)
            or model_admin.has_delete_permission(request)
            or (model_admin.has_add_permission(request) and model._meta.label not in AUDITOR_MAY_ADD)
        )
    ]
    assert editable == []


def test_the_clinic_admin_page_hides_other_clinics(client, clinic_a, clinic_b):
    user = staff(Role.CLINIC_ADMIN, clinic_a)
    client.force_login(user)
    listing = client.get("/admin/clinic/clinic/").content.decode()
    assert "Harbour Skin Clinic" in listing
    assert "Summit Dermatology" not in listing
    assert client.get(f"/admin/clinic/clinic/{clinic_b.pk}/change/").status_code == 404
    assert client.get(f"/admin/clinic/clinic/{clinic_b.pk}/history/").status_code == 404


def test_membership_choices_offer_only_the_admins_clinics(client, clinic_a, clinic_b):
    user = staff(Role.CLINIC_ADMIN, clinic_a)
    client.force_login(user)
    form = client.get("/admin/clinic/membership/add/").content.decode()
    assert "Harbour Skin Clinic" in form
    assert "Summit Dermatology" not in form


def test_a_membership_form_names_no_one_from_another_clinic(client, clinic_a, clinic_b):
    """The person box labels the id it is given, so its choices are the admin's colleagues, as in the autocomplete."""
    client.force_login(staff(Role.CLINIC_ADMIN, clinic_a))
    colleague = staff(Role.CLINICIAN, clinic_a, username="harbour_doctor")
    outsider = staff(Role.CLINICIAN, clinic_b, username="summit_doctor")
    assert "harbour_doctor" in client.get(f"/admin/clinic/membership/add/?user={colleague.pk}").content.decode()
    assert "summit_doctor" not in client.get(f"/admin/clinic/membership/add/?user={outsider.pk}").content.decode()
    posted = client.post("/admin/clinic/membership/add/", {"user": outsider.pk, "clinic": clinic_a.pk, "role": Role.CLINICIAN})
    assert posted.status_code == 200
    assert "summit_doctor" not in posted.content.decode()
    assert not Membership.objects.filter(user=outsider, clinic=clinic_a).exists()


def test_a_past_version_of_another_clinics_row_is_not_found(client, clinic_a, clinic_b):
    client.force_login(staff(Role.CLINIC_ADMIN, clinic_a))
    own, other = clinic_a.history.first(), clinic_b.history.first()
    assert client.get(f"/admin/clinic/clinic/{clinic_a.pk}/history/{own.history_id}/").status_code == 200
    assert client.get(f"/admin/clinic/clinic/{clinic_b.pk}/history/{other.history_id}/").status_code == 404
    assert client.get(f"/admin/clinic/clinic/{clinic_a.pk}/history/{other.history_id}/").status_code == 404


def test_a_record_that_keeps_no_history_has_no_past_version_page(client, clinic_a):
    from clinic.audit import record_event

    client.force_login(staff(Role.CLINIC_ADMIN, clinic_a))
    event = record_event(actor=None, action="test", clinic=clinic_a)
    assert client.get(f"/admin/clinic/auditevent/{event.pk}/history/1/").status_code == 404  # was a crash (500)


def test_staff_get_403_on_every_page_of_the_operators_tables_whether_the_row_exists_or_not(client, clinic_a):
    from django.contrib.auth.models import Group

    client.force_login(staff(Role.CLINIC_ADMIN, clinic_a))
    group = Group.objects.create(name="Operators")
    for object_id in (group.pk, group.pk + 1000):
        for page in ("change", "history", "delete"):
            assert client.get(f"/admin/auth/group/{object_id}/{page}/").status_code == 403


def test_another_clinics_person_is_not_found_on_the_user_pages(client, clinic_a, clinic_b):
    client.force_login(staff(Role.CLINIC_ADMIN, clinic_a))
    colleague, outsider = staff(Role.CLINICIAN, clinic_a), staff(Role.CLINICIAN, clinic_b)
    assert client.get(f"/admin/auth/user/{colleague.pk}/change/").status_code == 200
    for page in ("change", "history"):
        assert client.get(f"/admin/auth/user/{outsider.pk}/{page}/").status_code == 404  # not a redirect to the index


def test_an_auditor_cannot_post_changes_to_a_clinic(client, clinic_a):
    client.force_login(staff(Role.AUDITOR, clinic_a))
    response = client.post(f"/admin/clinic/clinic/{clinic_a.pk}/change/", {"name": "Renamed"})
    assert response.status_code == 403
    clinic_a.refresh_from_db()
    assert clinic_a.name == "Harbour Skin Clinic"


def test_a_clinic_admin_can_rename_their_clinic_and_history_keeps_the_old_name(client, clinic_a):
    client.force_login(staff(Role.CLINIC_ADMIN, clinic_a))
    page = client.get(f"/admin/clinic/clinic/{clinic_a.pk}/change/")
    form = page.context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields}
    data.update({"name": "Harbour Skin & Laser", "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"})
    data = {k: v for k, v in data.items() if v is not None}
    response = client.post(f"/admin/clinic/clinic/{clinic_a.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    clinic_a.refresh_from_db()
    assert clinic_a.name == "Harbour Skin & Laser"
    assert list(clinic_a.history.values_list("name", flat=True)) == ["Harbour Skin & Laser", "Harbour Skin Clinic"]


def test_only_the_operator_creates_clinics(clinic_a):
    request = RequestFactory().get("/admin/")
    request.user = staff(Role.CLINIC_ADMIN, clinic_a)
    assert not admin.site._registry[Clinic].has_add_permission(request)
    assert admin.site._registry[Membership].has_add_permission(request)
