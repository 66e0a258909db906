"""A clinic keeps an active clinic admin: the last one cannot be demoted, deactivated or moved away."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from clinic.admin import MembershipForm
from clinic.memberships import check_keeps_an_admin
from clinic.models import Membership, Role
from tests.admin_forms import change_form_data
from tests.factories import staff

pytestmark = pytest.mark.django_db


def _clinic_page(clinic) -> str:
    return f"/admin/clinic/clinic/{clinic.pk}/change/"


def _inline_prefix(data: dict, membership: Membership) -> str:
    key = next(key for key, value in data.items() if key.endswith("-id") and str(value) == str(membership.pk))
    return key.removesuffix("id")


def _post_clinic_page(client, clinic, changes: dict[Membership, dict]) -> object:
    data = change_form_data(client.get(_clinic_page(clinic)))
    for membership, fields in changes.items():
        prefix = _inline_prefix(data, membership)
        for name, value in fields.items():
            if value is None:
                data.pop(prefix + name, None)  # an unticked box is not posted
            else:
                data[prefix + name] = value
    return client.post(_clinic_page(clinic), data)


def _state(membership: Membership) -> tuple[str, bool]:
    membership.refresh_from_db()
    return membership.role, membership.is_active


@pytest.fixture
def own(clinic_admin, clinic_a) -> Membership:
    return Membership.objects.get(user=clinic_admin, clinic=clinic_a)


@pytest.mark.parametrize("change", [{"role": Role.AUDITOR}, {"is_active": None}])
def test_the_last_clinic_admin_cannot_demote_or_deactivate_themselves(client, clinic_admin, clinic_a, own, change):
    client.force_login(clinic_admin)

    response = _post_clinic_page(client, clinic_a, {own: change})

    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.non_form_errors()
    assert list(errors) == [
        f"{clinic_a} would have no active clinic admin left, and nobody there could then manage its staff, "
        "settings or lot recalls. Make someone else clinic admin first."
    ]
    assert _state(own) == (Role.CLINIC_ADMIN, True)


def test_promoting_a_colleague_in_the_same_save_lets_the_admin_step_down(client, clinic_admin, clinic_a, own):
    colleague = Membership.objects.get(user=staff(Role.CLINICIAN, clinic_a, username="dr_next"))
    client.force_login(clinic_admin)

    response = _post_clinic_page(client, clinic_a, {own: {"role": Role.AUDITOR}, colleague: {"role": Role.CLINIC_ADMIN}})

    assert response.status_code == 302
    assert (_state(own), _state(colleague)) == ((Role.AUDITOR, True), (Role.CLINIC_ADMIN, True))


def test_with_another_active_admin_one_may_step_down(client, clinic_admin, clinic_a, own):
    staff(Role.CLINIC_ADMIN, clinic_a, username="admin_a2")
    client.force_login(clinic_admin)

    response = _post_clinic_page(client, clinic_a, {own: {"is_active": None}})

    assert response.status_code == 302
    assert _state(own) == (Role.CLINIC_ADMIN, False)


def test_an_inactive_admin_does_not_count(clinic_a, own):
    former = staff(Role.CLINICIAN, clinic_a, username="former_admin").memberships.get()
    Membership.objects.filter(pk=former.pk).update(role=Role.CLINIC_ADMIN, is_active=False)

    with pytest.raises(ValidationError):
        check_keeps_an_admin(clinic_a, leaving={own.pk})
    check_keeps_an_admin(clinic_a, leaving={own.pk}, joining=1)  # someone becomes admin in the same save


def _membership_page(membership: Membership) -> str:
    return f"/admin/clinic/membership/{membership.pk}/change/"


def test_the_membership_admin_refuses_too(client, clinic_admin, clinic_a, own):
    client.force_login(clinic_admin)
    data = change_form_data(client.get(_membership_page(own)))

    response = client.post(_membership_page(own), {**data, "role": Role.COORDINATOR})

    assert response.status_code == 200
    assert "would have no active clinic admin left" in str(response.context["adminform"].form.non_field_errors())
    assert _state(own) == (Role.CLINIC_ADMIN, True)


def test_the_last_admin_cannot_be_moved_to_another_clinic(clinic_a, clinic_b, own):
    # Only the operator sees two clinics' choices on the membership page; its form is the same.
    form = MembershipForm(
        instance=own, data={"user": own.user_id, "clinic": clinic_b.pk, "role": Role.CLINIC_ADMIN, "is_active": True}
    )

    assert not form.is_valid()
    assert "would have no active clinic admin left" in str(form.non_field_errors())
    own.refresh_from_db()
    assert own.clinic == clinic_a
