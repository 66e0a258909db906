"""What the protocol pages offer a clinic's staff: their clinic (never "shared"), rules that would change
something, a plain time of day for a step, and messages as written ("v2 …", not "V2 …")."""

from __future__ import annotations

import pytest

from protocols import versioning
from protocols.defaults import install_example_protocols
from protocols.models import ContraindicationRule
from tests.factories import StepFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(clinic_a):
    version = versioning.create_protocol(clinic=clinic_a, name="Draft protocol", procedure="microneedling")
    StepFactory(version=version, title="Self-check", kind="outcome_check", day=3)
    return version


def _rule(code: str, **fields) -> ContraindicationRule:
    return ContraindicationRule.objects.create(code=code, fact="pregnant", severity="absolute", message="x", **fields)


def test_a_clinics_staff_get_their_clinic_without_an_empty_choice_or_the_shared_template_hint(
    client, clinician, clinic_a
):
    client.force_login(clinician)
    response = client.get("/admin/protocols/protocol/add/")
    field = response.context["adminform"].form.fields["clinic"]
    assert [label for _, label in field.choices] == [str(clinic_a)]
    body = response.content.decode()
    assert "Empty for a shared template" not in body
    assert f'<option value="{clinic_a.pk}" selected>' in body


def test_the_operator_may_still_leave_the_clinic_empty_for_a_shared_template(client, admin_user):
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client.force_login(admin_user)
    session = client.session  # the operator signs in with a second factor
    session[DEVICE_ID_SESSION_KEY] = TOTPDevice.objects.create(user=admin_user, name="phone", confirmed=True).persistent_id
    session.save()
    response = client.get("/admin/protocols/protocol/add/")
    assert "Empty for a shared template" in response.content.decode()
    assert "" in [value for value, _ in response.context["adminform"].form.fields["clinic"].choices]


def test_added_rules_offers_only_rules_that_do_not_apply_by_default(client, clinician, clinic_a, draft):
    _rule("library-all")
    _rule("library-laser", procedures=["fractional_ablative"])
    _rule("harbour-all", clinic=clinic_a)
    _rule("harbour-laser", clinic=clinic_a, procedures=["fractional_ablative"])
    client.force_login(clinician)
    response = client.get(f"/admin/protocols/protocolversion/{draft.pk}/change/")
    form = response.context["adminform"].form
    offered = {rule.code for rule in form.fields["added_rules"].queryset}
    assert "library-laser" in offered and "harbour-laser" in offered
    assert "library-all" not in offered and "harbour-all" not in offered
    removable = {rule.code for rule in form.fields["removed_rules"].queryset}
    assert {"library-all", "harbour-all"} <= removable
    assert "library-laser" not in removable and "harbour-laser" not in removable  # they do not apply to remove


def test_a_step_time_of_day_is_a_plain_time_input_without_now(client, clinician, draft):
    client.force_login(clinician)
    body = client.get(f"/admin/protocols/protocolversion/{draft.pk}/change/").content.decode()
    assert 'type="time" name="steps-0-local_time"' in body
    assert "vTimeField" not in body


def test_the_message_that_a_version_changed_nothing_keeps_its_lower_case_v(client, clinician, clinic_a):
    published = install_example_protocols(clinic=clinic_a)["microneedling"]
    draft = versioning.start_draft(protocol=published.protocol, by=clinician)
    client.force_login(clinician)
    response = client.post(f"/admin/protocols/protocolversion/{draft.pk}/publish/", follow=True)
    body = response.content.decode()
    assert f"v{draft.number} is the same as v{published.number}" in body
    assert f"V{draft.number} is the same" not in body
