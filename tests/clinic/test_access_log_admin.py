"""The access log answers "who looked at patient X?": search by person and action, filters by person,
record type and patient, records linked to their pages, and the detail in words."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clinic.admin_access_log import LIST_READS_LEFT_OUT
from clinic.audit import record_event
from clinic.models import AuditEvent, Role
from patients.models import OutcomeAssessment
from tests.factories import (
    IntakeFactory,
    MembershipFactory,
    PatientFactory,
    ReminderFactory,
    TreatmentFactory,
    VersionFactory,
    staff,
)

pytestmark = pytest.mark.django_db

LOG = "/admin/clinic/auditevent/"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _listed(client, **params) -> list[AuditEvent]:
    response = client.get(LOG, params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def _actions(client, **params) -> set[str]:
    return {event.action for event in _listed(client, **params)}


def _filter_choices(response, title: str) -> list[str]:
    cl = response.context["cl"]
    return [choice["display"] for spec in cl.filter_specs if spec.title == title for choice in spec.choices(cl)]


# --- search -------------------------------------------------------------------------------------------


def test_the_menu_and_the_page_call_it_the_access_log_as_the_shortcut_does(client, auditor):
    client.force_login(auditor)
    index = client.get("/admin/").content.decode()
    assert f'<a href="{LOG}">Access log</a>' in index and "Audit event" not in index
    assert "Access log" in client.get("/admin/clinic/").content.decode()
    assert "Audit event" not in client.get(LOG).content.decode()


def test_it_finds_a_persons_entries_by_their_username_even_after_a_rename(client, auditor, clinician, clinic_a):
    record_event(actor=clinician, action="patient.view", clinic=clinic_a, obj=PatientFactory(clinic=clinic_a))
    record_event(actor=auditor, action="export.run", clinic=clinic_a)
    clinician.username = "dr_okafor"
    clinician.save()
    client.force_login(auditor)
    assert _actions(client, q="dr_okafor") == {"patient.view"}
    assert _actions(client, q="clinician_a") == {"patient.view"}  # the name it was written with


def test_it_finds_entries_by_action(client, auditor, clinician, clinic_a):
    patient = PatientFactory(clinic=clinic_a)
    record_event(actor=clinician, action="patient.view", clinic=clinic_a, obj=patient)
    record_event(actor=clinician, action="screening.override", clinic=clinic_a, obj=patient)
    client.force_login(auditor)
    assert _actions(client, q="screening.override") == {"screening.override"}


def test_it_finds_entries_by_record_type_and_exact_id(client, auditor, clinician, clinic_a):
    patients = [PatientFactory(clinic=clinic_a) for _ in range(12)]
    for patient in patients:
        record_event(actor=clinician, action="patient.view", clinic=clinic_a, obj=patient)
    record_event(actor=clinician, action="protocol.publish", clinic=clinic_a, obj=VersionFactory())
    client.force_login(auditor)
    wanted = patients[0].pk
    found = _listed(client, q=f"patient {wanted}")
    assert [event.object_id for event in found] == [str(wanted)]  # not 10, 11, 12 … for "1"


def test_an_id_finds_its_record_not_the_entries_whose_request_id_contains_it(rf, client, auditor, clinician,
                                                                             clinic_a):
    patients = [PatientFactory(clinic=clinic_a) for _ in range(3)]
    wanted = patients[0]
    request_ids = {}
    for patient in patients:
        request = rf.get("/")
        # Request ids are uuid4 hex: each of these holds the wanted id, as "12" is in many real ones.
        request.request_id = request_ids[patient.pk] = f"{uuid.uuid4().hex[:20]}{wanted.pk:04d}{patient.pk:08d}"
        record_event(actor=clinician, action="patient.view", clinic=clinic_a, obj=patient, request=request)
    client.force_login(auditor)
    assert [event.object_id for event in _listed(client, q=f"patient {wanted.pk}")] == [str(wanted.pk)]
    other = patients[1]
    assert [event.object_id for event in _listed(client, q=request_ids[other.pk])] == [str(other.pk)]


# --- filters ------------------------------------------------------------------------------------------


def test_the_person_filter_offers_the_clinics_staff_only_including_those_who_left(client, auditor, clinician,
                                                                                  clinic_a, clinician_b):
    former = staff(Role.COORDINATOR, clinic_a, username="left_last_year")
    former.memberships.update(is_active=False)
    record_event(actor=former, action="patient.view", clinic=clinic_a, obj=PatientFactory(clinic=clinic_a))
    record_event(actor=clinician, action="export.run", clinic=clinic_a)
    client.force_login(auditor)
    response = client.get(LOG)
    offered = _filter_choices(response, "actor")
    assert {"auditor_a", "clinician_a", "left_last_year"} <= set(offered)
    assert "clinician_b" not in offered
    assert _actions(client, actor__id__exact=former.pk) == {"patient.view"}


def test_the_record_type_filter_offers_the_kinds_of_record_the_app_logs_and_filters(client, auditor, clinician,
                                                                                    clinic_a, clinic_b, clinician_b):
    record_event(actor=clinician, action="patient.view", clinic=clinic_a, obj=PatientFactory(clinic=clinic_a))
    record_event(actor=clinician, action="intake.view", clinic=clinic_a, obj=IntakeFactory(patient__clinic=clinic_a))
    record_event(actor=clinician_b, action="protocol.publish", clinic=clinic_b, obj=VersionFactory())
    client.force_login(auditor)
    offered = _filter_choices(client.get(LOG), "record type")
    assert offered[0] == "All"
    assert {"Intake", "Patient", "Treatment", "Reminder", "Protocol version", "Membership", "User"} <= set(offered)
    assert "Access-log entry" not in offered and not any(name.lower().startswith("historical") for name in offered)
    assert _actions(client, object_type="patients.intake") == {"intake.view"}
    assert _actions(client, object_type="protocols.protocolversion") == set()  # clinic B's entry


def test_the_record_type_choices_cost_no_query_not_a_distinct_over_the_log(rf, auditor, django_assert_num_queries):
    from django.contrib import admin as django_admin

    from clinic.admin_access_log import RecordTypeFilter

    request = rf.get(LOG)
    request.user = auditor
    model_admin = django_admin.site.get_model_admin(AuditEvent)
    with django_assert_num_queries(0):
        choices = RecordTypeFilter(request, {}, AuditEvent, model_admin).lookup_choices
    assert ("patients.treatment", "Treatment") in choices


@pytest.fixture
def patient_story(clinic_a, clinic_b, clinician, clinician_b):
    """Entries about one patient and their records, and entries about others that must not show with them."""
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a, screening__patient__family_name="Nwosu")
    patient = treatment.patient
    assessment = OutcomeAssessment.objects.create(treatment=treatment, time_point_day=1, erythema=2,
                                                  recorded_by=clinician)
    about = [
        ("patient.view", patient), ("screening.view", treatment.screening), ("treatment.cancel", treatment),
        ("intake.view", IntakeFactory(patient=patient)), ("outcome.view", assessment),
        ("reminder.cancel", ReminderFactory(treatment=treatment)),
    ]
    for action, obj in about:
        record_event(actor=clinician, action=action, clinic=clinic_a, obj=obj)
    other = TreatmentFactory(screening__patient__clinic=clinic_a)
    record_event(actor=clinician, action="other.patient.view", clinic=clinic_a, obj=other.patient)
    record_event(actor=clinician, action="other.treatment.cancel", clinic=clinic_a, obj=other)
    record_event(actor=clinician, action="export.run", clinic=clinic_a)
    elsewhere = TreatmentFactory(screening__patient__clinic=clinic_b)
    record_event(actor=clinician_b, action="elsewhere.patient.view", clinic=clinic_b, obj=elsewhere.patient)
    return patient, {action for action, _obj in about}, elsewhere.patient


def test_the_patient_filter_shows_the_entries_about_the_patient_and_their_records(client, auditor, patient_story):
    patient, about, _elsewhere = patient_story
    client.force_login(auditor)
    assert _actions(client, patient=patient.pk) == about
    response = client.get(LOG, {"patient": patient.pk})
    assert patient.full_name in _filter_choices(response, "patient")


def _list_entries(clinician, clinic_a, patient) -> None:
    """API list pages: one that showed the patient, one that showed their treatment, one of others only."""
    others = [PatientFactory(clinic=clinic_a) for _ in range(2)]
    record_event(actor=clinician, action="list", clinic=clinic_a, object_type="patients.patient",
                 objects=[others[0], patient, others[1]], detail={"page": 1, "filters": {}})
    record_event(actor=clinician, action="list", clinic=clinic_a, object_type="patients.treatment",
                 objects=[patient.treatments.get()], detail={"page": 1, "filters": {}})
    record_event(actor=clinician, action="list", clinic=clinic_a, object_type="patients.patient", objects=others,
                 detail={"page": 2, "filters": {}})


@pytest.mark.skipif(not connection.features.supports_json_field_contains, reason="no JSON containment (SQLite)")
def test_the_patient_filter_includes_the_api_list_pages_that_showed_the_patient_or_their_records(
    client, auditor, clinician, clinic_a, patient_story
):
    patient, about, _elsewhere = patient_story
    _list_entries(clinician, clinic_a, patient)
    client.force_login(auditor)

    listed = _listed(client, patient=patient.pk)

    assert {event.action for event in listed} == about | {"list"}
    assert sorted(event.object_type for event in listed if event.action == "list") == [
        "patients.patient", "patients.treatment"]
    assert LIST_READS_LEFT_OUT not in client.get(LOG, {"patient": patient.pk}).content.decode()


@pytest.mark.skipif(connection.features.supports_json_field_contains, reason="lists are included on this database")
def test_the_patient_filter_says_the_api_list_pages_are_not_included_where_they_cannot_be(
    client, auditor, clinician, clinic_a, patient_story
):
    patient, about, _elsewhere = patient_story
    _list_entries(clinician, clinic_a, patient)
    client.force_login(auditor)

    assert _actions(client, patient=patient.pk) == about
    said = [str(m) for m in client.get(LOG, {"patient": patient.pk}).context["messages"]]
    assert said == [LIST_READS_LEFT_OUT]
    assert 'search the log for the action "list"' in LIST_READS_LEFT_OUT
    assert not list(client.get(LOG).context["messages"])  # the whole log leaves nothing out


def test_the_patient_filter_shows_nothing_of_another_clinics_patient(client, auditor, patient_story):
    _patient, _about, elsewhere = patient_story
    client.force_login(auditor)
    response = client.get(LOG, {"patient": elsewhere.pk})
    assert list(response.context["cl"].result_list) == []
    assert elsewhere.full_name not in response.content.decode()


def test_a_patient_filter_that_is_not_an_id_is_refused_not_ignored(client, auditor, patient_story):
    client.force_login(auditor)
    response = client.get(LOG, {"patient": "abc"})
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_the_patients_page_links_to_their_access_log_for_those_who_read_it(client, auditor, coordinator, clinic_a):
    patient = PatientFactory(clinic=clinic_a)
    link = f'<a href="{LOG}?patient={patient.pk}">Access log for this patient</a>'
    client.force_login(auditor)
    assert link in client.get(f"/admin/patients/patient/{patient.pk}/change/").content.decode()
    client.force_login(coordinator)
    assert "Access log for this patient" not in client.get(f"/admin/patients/patient/{patient.pk}/change/").content.decode()


# --- records and detail -------------------------------------------------------------------------------


def test_a_record_links_to_its_page_when_it_exists_and_the_reader_may_open_it(client, auditor, clinician, clinic_a,
                                                                             clinic_b):
    patient = PatientFactory(clinic=clinic_a)
    record_event(actor=clinician, action="patient.view", clinic=clinic_a, obj=patient)
    # Another clinic's record (entries of an operator's slip) and a record since removed: named, not linked.
    foreign = PatientFactory(clinic=clinic_b)
    record_event(actor=clinician, action="foreign.view", clinic=clinic_a, obj=foreign)
    gone = PatientFactory(clinic=clinic_a)
    record_event(actor=clinician, action="gone.view", clinic=clinic_a, obj=gone)
    gone_id = gone.pk
    gone.delete()
    record_event(actor=clinician, action="list", clinic=clinic_a, object_type="patients.patient")
    client.force_login(auditor)
    body = client.get(LOG).content.decode()
    assert f'<a href="/admin/patients/patient/{patient.pk}/change/">Patient {patient.pk}</a>' in body
    assert f"<td class=\"field-record\">Patient {foreign.pk}</td>" in body
    assert f"<td class=\"field-record\">Patient {gone_id}</td>" in body
    assert "<td class=\"field-record\">Patients (list)</td>" in body


def test_the_detail_reads_as_key_value_lines_escaped(client, auditor, clinician, clinic_a):
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a)
    record_event(actor=clinician, action="treatment.cancel", clinic=clinic_a, obj=treatment,
                 objects=[treatment.patient], detail={"reason": "<b>moved</b> away", "reminders_cancelled": 3})
    client.force_login(auditor)
    body = client.get(LOG).content.decode()
    assert ("<div>reason: &lt;b&gt;moved&lt;/b&gt; away</div><div>reminders cancelled: 3</div>"
            f"<div>objects: patient {treatment.patient.pk}</div>") in body
    assert '"reminders_cancelled"' not in body  # no raw JSON


def test_the_page_costs_the_same_queries_for_many_kinds_of_record_as_for_one(client, auditor, clinician, clinic_a):
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a)
    client.force_login(auditor)
    record_event(actor=clinician, action="patient.view", clinic=clinic_a, obj=treatment.patient)
    client.get(LOG)
    with CaptureQueriesContext(connection) as one:
        client.get(LOG)
    for obj in (treatment, treatment.screening, IntakeFactory(patient=treatment.patient), clinic_a,
                ReminderFactory(treatment=treatment)):
        record_event(actor=clinician, action="view", clinic=clinic_a, obj=obj)
    with CaptureQueriesContext(connection) as many:
        response = client.get(LOG)
    assert response.context["cl"].result_count == 6
    assert all(event.record_url.startswith("/admin/") for event in response.context["cl"].result_list)
    assert len(many) == len(one)


def test_someone_in_two_clinics_who_audits_one_sees_that_ones_log_only(client, clinician, coordinator, clinic_a,
                                                                       clinic_b, clinician_b):
    MembershipFactory(user=clinician, clinic=clinic_b, role=Role.AUDITOR)
    record_event(actor=clinician_b, action="b.view", clinic=clinic_b, obj=PatientFactory(clinic=clinic_b))
    record_event(actor=clinician, action="a.view", clinic=clinic_a, obj=PatientFactory(clinic=clinic_a))
    client.force_login(clinician)
    assert _actions(client) == {"b.view"}
    offered = _filter_choices(client.get(LOG), "actor")
    assert "clinician_b" in offered
    assert "coordinator_a" not in offered  # a colleague in clinic A only, whose log they do not read


def test_the_entrys_page_links_its_record_and_gives_the_detail_in_full(client, auditor, clinician, clinic_a):
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a)
    reminders = [ReminderFactory(treatment=treatment, occurrence=n) for n in range(8)]
    note = ("Patient moved abroad; " * 6).strip()
    event = record_event(actor=clinician, action="treatment.cancel", clinic=clinic_a, obj=treatment.screening,
                         objects=reminders, detail={"reason": note})
    client.force_login(auditor)
    listed = client.get(LOG).content.decode()
    assert "and 3 more" in listed
    assert note not in listed  # cut short in the list
    page = client.get(f"{LOG}{event.pk}/change/").content.decode()
    screening_url = f"/admin/patients/patient/{treatment.patient_id}/screenings/{treatment.screening_id}/"
    assert f'<a href="{screening_url}">Screening {treatment.screening_id}</a>' in page
    assert f"<div>reason: {note}</div>" in page
    assert f"reminder {reminders[-1].pk}" in page
