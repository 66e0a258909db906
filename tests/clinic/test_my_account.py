"""“My account”: every staff member changes their own name and address; a clinic admin, those of a colleague
who works only in clinics they manage. Every change is logged; nothing else of an account can be changed there."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model

from clinic.models import AuditEvent, Role
from patients.staff_alerts import NOBODY_TO_EMAIL
from tests.factories import MembershipFactory, staff

pytestmark = pytest.mark.django_db

ACCOUNT = "/admin/account/"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _user_page(person) -> str:
    return f"/admin/auth/user/{person.pk}/change/"


def _logged(person) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="account.updated", object_id=str(person.pk)).order_by("id"))


def test_the_header_links_to_my_account_next_to_change_password(client, clinician):
    client.force_login(clinician)
    body = client.get("/admin/").content.decode()
    assert f'<a href="{ACCOUNT}">My account</a> /' in body
    assert body.index("My account") < body.index("Change password")


def test_a_clinician_changes_their_own_name_and_address_and_it_is_logged(client, clinician, clinic_a):
    client.force_login(clinician)
    assert 'value="clinician_a@staff.example"' in client.get(ACCOUNT).content.decode()

    response = client.post(ACCOUNT, {"first_name": "Ada", "last_name": "Byrne", "email": "ada.byrne@harbour.example"},
                           follow=True)

    clinician.refresh_from_db()
    assert (clinician.first_name, clinician.last_name, clinician.email) == ("Ada", "Byrne", "ada.byrne@harbour.example")
    assert "Your account is saved." in response.content.decode()
    [event] = _logged(clinician)
    assert (event.clinic, event.actor, event.object_type) == (clinic_a, clinician, "auth.user")
    assert event.detail["old_email"] == "clinician_a@staff.example"
    assert event.detail["new_email"] == "ada.byrne@harbour.example"
    assert event.detail["new_name"] == "Ada Byrne"


def test_saving_the_same_values_logs_nothing(client, clinician):
    client.force_login(clinician)
    client.post(ACCOUNT, {"first_name": "", "last_name": "", "email": "clinician_a@staff.example"})
    assert _logged(clinician) == []


def test_an_address_another_account_has_in_any_capitals_is_refused_and_nothing_is_saved(client, clinician,
                                                                                        coordinator):
    client.force_login(clinician)

    response = client.post(ACCOUNT, {"first_name": "Ada", "last_name": "", "email": "Coordinator_A@Staff.example"})

    assert response.status_code == 400
    assert "Another account already has the address Coordinator_A@staff.example" in response.content.decode()
    clinician.refresh_from_db()
    assert (clinician.first_name, clinician.email) == ("", "clinician_a@staff.example")
    assert _logged(clinician) == []


@pytest.mark.parametrize("email", ["", "not an address"])
def test_an_empty_or_malformed_address_is_refused(client, clinician, email):
    client.force_login(clinician)
    response = client.post(ACCOUNT, {"first_name": "", "last_name": "", "email": email})
    assert response.status_code == 400
    clinician.refresh_from_db()
    assert clinician.email == "clinician_a@staff.example"


def test_the_username_and_the_flags_posted_with_it_are_ignored(client, clinician):
    client.force_login(clinician)

    client.post(ACCOUNT, {"first_name": "Ada", "last_name": "", "email": "ada@harbour.example", "username": "boss",
                          "is_superuser": "on", "is_staff": "off", "is_active": "", "user_permissions": ["1"]})

    clinician.refresh_from_db()
    assert clinician.first_name == "Ada"
    assert (clinician.username, clinician.is_superuser, clinician.is_staff, clinician.is_active) == (
        "clinician_a", False, True, True)
    assert not clinician.user_permissions.exists()
    assert _logged(clinician)[0].detail["changed"] == ["first_name", "email"]


def test_a_clinic_admin_changes_the_address_of_a_colleague_who_works_only_in_their_clinics(client, clinic_admin,
                                                                                           clinician, clinic_a):
    client.force_login(clinic_admin)

    response = client.post(_user_page(clinician), {"first_name": "Ada", "last_name": "Byrne",
                                                   "email": "ada@harbour.example", "username": "hijacked",
                                                   "is_superuser": "on"})

    assert response.status_code == 302
    clinician.refresh_from_db()
    assert (clinician.email, clinician.get_full_name()) == ("ada@harbour.example", "Ada Byrne")
    assert (clinician.username, clinician.is_superuser) == ("clinician_a", False)
    [event] = _logged(clinician)
    assert (event.actor, event.clinic, event.detail["new_email"]) == (clinic_admin, clinic_a, "ada@harbour.example")


def test_a_clinic_admin_gets_the_same_refusal_for_an_address_already_taken(client, clinic_admin, clinician,
                                                                           coordinator):
    client.force_login(clinic_admin)
    response = client.post(_user_page(clinician), {"first_name": "", "last_name": "",
                                                   "email": "COORDINATOR_A@staff.example"})
    assert response.status_code == 200 and "Another account already has the address" in response.content.decode()
    clinician.refresh_from_db()
    assert clinician.email == "clinician_a@staff.example"


def test_a_colleague_who_also_works_in_a_clinic_the_admin_does_not_manage_is_read_only_and_says_why(
        client, clinic_admin, clinician, clinic_b):
    MembershipFactory(user=clinician, clinic=clinic_b, role=Role.CLINICIAN)
    client.force_login(clinic_admin)

    page = client.get(_user_page(clinician)).content.decode()
    refused = client.post(_user_page(clinician), {"first_name": "", "last_name": "", "email": "ada@harbour.example"})

    assert "also works in a clinic you do not manage" in page and 'name="email"' not in page
    assert clinic_b.name not in page
    assert refused.status_code == 403
    clinician.refresh_from_db()
    assert clinician.email == "clinician_a@staff.example" and _logged(clinician) == []


def test_a_former_colleague_whose_only_work_is_elsewhere_cannot_be_changed(client, clinic_admin, clinician, clinic_b):
    clinician.memberships.update(is_active=False)
    MembershipFactory(user=clinician, clinic=clinic_b, role=Role.CLINICIAN)
    client.force_login(clinic_admin)
    assert client.post(_user_page(clinician), {"email": "ada@harbour.example"}).status_code == 403
    assert "no longer works in a clinic you manage" in client.get(_user_page(clinician)).content.decode()


def test_another_clinics_staff_member_is_not_found_nor_changed(client, clinic_admin, clinician_b):
    client.force_login(clinic_admin)
    assert client.post(_user_page(clinician_b), {"email": "x@harbour.example"}).status_code in (403, 404)
    assert client.get(_user_page(clinician_b)).status_code == 404
    clinician_b.refresh_from_db()
    assert clinician_b.email == "clinician_b@staff.example"


def test_an_operator_account_with_a_membership_is_read_only_to_a_clinic_admin(client, clinic_admin, clinic_a):
    operator = staff(Role.CLINICIAN, clinic_a, username="operator", is_superuser=True)
    client.force_login(clinic_admin)
    assert client.post(_user_page(operator), {"email": "mine@harbour.example"}).status_code == 403


def test_a_clinician_cannot_change_a_colleague(client, clinician, coordinator):
    client.force_login(clinician)
    assert client.post(_user_page(coordinator), {"email": "x@harbour.example"}).status_code == 403
    coordinator.refresh_from_db()
    assert coordinator.email == "coordinator_a@staff.example"


def test_the_failed_alert_says_where_an_address_is_added():
    assert "“My account”" in NOBODY_TO_EMAIL and "clinic admin on the colleague's page" in NOBODY_TO_EMAIL


def test_the_operators_change_of_an_address_is_logged_too(rf, clinician, clinic_a):
    operator = get_user_model().objects.create_superuser("root", "root@ops.example", "pw")
    request = rf.post(_user_page(clinician))
    request.user = operator
    form = SimpleNamespace(initial={"first_name": "", "last_name": "", "email": clinician.email})
    clinician.email = "ada@harbour.example"

    admin.site.get_model_admin(get_user_model()).save_model(request, clinician, form, change=True)

    [event] = _logged(clinician)
    assert (event.actor, event.clinic, event.detail["old_email"]) == (operator, clinic_a, "clinician_a@staff.example")
