"""A past version of an outcome or adverse event reads, to anyone who may view it, as the record's own page does."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from patients.models import AdverseEvent, OutcomeAssessment, TreatmentArm
from tests.factories import TreatmentFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _moved_to_the_other_arm(clinic, clinician, kind: str):
    """An entry recorded on the left cheek, then corrected to the right: its first version names the left."""
    treatment = TreatmentFactory(screening__patient__clinic=clinic, ended_at=NOW - dt.timedelta(days=10))
    left = TreatmentArm.objects.create(treatment=treatment, label="Left cheek", is_control=False)
    right = TreatmentArm.objects.create(treatment=treatment, label="Right cheek", is_control=True)
    if kind == "outcomeassessment":
        entry = OutcomeAssessment.objects.create(
            treatment=treatment, arm=left, time_point_day=3, recorded_by=clinician, erythema=1
        )
    else:
        entry = AdverseEvent.objects.create(
            treatment=treatment, arm=left, kind="infection", severity="mild", onset_date=NOW.date(), recorded_by=clinician
        )
    first = entry.history.earliest().history_id
    entry.arm = right
    entry.save()
    return f"/admin/patients/{kind}/{entry.pk}/history/{first}/"


def _change_form(body: str) -> str:
    return re.search(r'<form [^>]*id="\w+_form".*?</form>', body, re.S).group(0)


def _editable_inputs(form: str) -> list[str]:
    tags = re.findall(r"<(?:input|select|textarea)\b[^>]*>", form)
    return [tag for tag in tags
            if 'type="hidden"' not in tag and " disabled" not in tag and " readonly" not in tag]


@pytest.mark.parametrize("kind", ["outcomeassessment", "adverseevent"])
@pytest.mark.parametrize("role", ["auditor", "clinic_admin"])
def test_a_viewer_reads_the_arm_a_past_version_recorded(client, request, clinic_a, clinician, kind, role):
    url = _moved_to_the_other_arm(clinic_a, clinician, kind)
    client.force_login(request.getfixturevalue(role))

    page = client.get(url)

    assert page.status_code == 200
    form = _change_form(page.content.decode())
    assert "Left cheek" in form
    assert "Right cheek" not in form


@pytest.mark.parametrize("kind", ["outcomeassessment", "adverseevent"])
def test_a_past_version_is_read_only_for_someone_who_may_not_change_it(client, clinic_a, clinician, auditor, kind):
    url = _moved_to_the_other_arm(clinic_a, clinician, kind)
    client.force_login(auditor)

    form = _change_form(client.get(url).content.decode())

    assert _editable_inputs(form) == []
    assert 'type="submit"' not in form
    assert "Close" in form  # the way back to the history list


@pytest.mark.parametrize("kind", ["outcomeassessment", "adverseevent"])
def test_a_clinician_still_reads_the_past_version_with_its_arm(client, clinic_a, clinician, kind):
    url = _moved_to_the_other_arm(clinic_a, clinician, kind)
    client.force_login(clinician)

    page = client.get(url)

    assert page.status_code == 200
    form = _change_form(page.content.decode())
    assert re.search(r"<option [^>]*selected[^>]*>Left cheek", form)
    assert 'type="submit"' not in form


def test_a_past_versions_arm_choices_are_its_treatments_arms_the_viewer_may_view(client, clinic_a, clinician, auditor):
    url = _moved_to_the_other_arm(clinic_a, clinician, "adverseevent")
    TreatmentArm.objects.create(treatment=TreatmentFactory(screening__patient__clinic=clinic_a), label="Forehead")
    client.force_login(auditor)

    arms = client.get(url).context["adminform"].form.fields["arm"].queryset

    assert sorted(arm.label for arm in arms) == ["Left cheek", "Right cheek"]
