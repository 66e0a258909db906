"""The treatment admin: record through the service, the timeline with resend/cancel, and clinic scoping."""

from __future__ import annotations

import datetime as dt
import html
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from patients import treatments
from patients.models import Reminder, Treatment
from protocols import versioning
from tests.factories import LotFactory, ProductFactory, ScreeningFactory, treatable_patient
from tests.patients.conftest import NOW, TWO_EVENING_STEPS

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_at_now")]

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
Status = Reminder.Status
ADD = "/admin/patients/treatment/add/"


@pytest.fixture
def plan(clinic_a):
    return treatable_patient(clinic_a, steps=TWO_EVENING_STEPS, time_zone="Europe/Berlin")


def form_data(screening, **overrides):
    data = {
        "patient": screening.patient_id, "screening": screening.pk,
        # Clinic time (Europe/London): 10:00 BST is 09:00 UTC.
        "started_at": "2026-05-04T09:15", "ended_at": "2026-05-04T10:00", "areas": "full face",
        "applications-TOTAL_FORMS": "2", "applications-INITIAL_FORMS": "0",
        "arms-TOTAL_FORMS": "2", "arms-INITIAL_FORMS": "0",
    }
    return {**data, **overrides}


def test_it_asks_for_the_patient_then_offers_only_screenings_and_lots_that_may_be_used(client, clinician, plan, clinic_a):
    patient, version, screening = plan
    blocked = ScreeningFactory(patient=patient, protocol_version=version, outcome="blocked")
    usable = LotFactory(product=ProductFactory(clinic=clinic_a), lot_number="GOOD-1")
    LotFactory(product=usable.product, lot_number="RECALLED-1", recalled=True, recall_reason="x",
               recalled_at=NOW - dt.timedelta(days=30))  # before any procedure the form takes
    LotFactory(product=usable.product, lot_number="EXPIRED-1", received_date=dt.date(2025, 1, 1),
               expiry_date=dt.date(2026, 1, 1))
    client.force_login(clinician)
    chooser = client.get(ADD)
    assert chooser.status_code == 200
    assert str(patient) in chooser.content.decode()
    page = client.get(ADD, {"patient": patient.pk})
    form = page.context["form"]
    assert list(form.fields["screening"].queryset) == [screening]
    assert blocked not in form.fields["screening"].queryset
    lots = page.context["applications"].forms[0].fields["lot"].queryset
    assert [lot.lot_number for lot in lots] == ["GOOD-1"]


def _publish_v2(version):
    draft = versioning.start_draft(protocol=version.protocol, change_note="The protocol runs a week longer.")
    draft.length_days += 7
    draft.save()
    return versioning.publish(version=draft)


def test_a_screening_for_a_version_retired_since_is_not_offered_and_says_what_to_do(client, clinician, plan):
    patient, version, screening = plan
    v2 = _publish_v2(version)  # retires the version the patient was screened for
    client.force_login(clinician)

    assert list(client.get(ADD, {"patient": patient.pk}).context["form"].fields["screening"].queryset) == []
    # Posted anyway (a page opened before the publish): refused on the screening, saying what to do.
    response = client.post(ADD, form_data(screening))

    assert response.status_code == 400
    name = version.protocol.name
    retired = (f"{name} v{version.number} is retired: new treatments follow v{v2.number}. Screen the patient again "
               f"for {name} v{v2.number}, then record the treatment on that screening.")
    assert response.context["form"].errors["screening"] == [retired]
    assert not Treatment.objects.exists()
    # The service says the same to the API.
    errors = treatments.treatment_errors(
        patient=patient, protocol_version=version, screening=screening, areas="face",
        started_at=NOW - dt.timedelta(hours=1), ended_at=NOW - dt.timedelta(minutes=15),
    )
    assert errors["protocol_version"] == [retired]


def test_it_records_a_treatment_with_its_application_through_the_service(client, clinician, plan, clinic_a):
    _patient, _version, screening = plan
    lot = LotFactory(product=ProductFactory(clinic=clinic_a))
    client.force_login(clinician)
    response = client.post(
        f"{ADD}?patient={screening.patient_id}",
        form_data(screening, **{"applications-0-lot": lot.pk, "applications-0-volume_ml": "2",
                                "applications-0-minutes_after_procedure": "3"}),
    )
    treatment = Treatment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:patients_treatment_change", args=[treatment.pk])
    assert treatment.ended_at == NOW - dt.timedelta(minutes=30)
    assert treatment.applications.get().lot == lot
    assert treatment.reminders.count() == 2
    # The history rows name who recorded it, as for any change made in the admin.
    assert [row.history_user for row in treatment.history.all()] == [clinician]
    assert [row.history_user for row in treatment.applications.get().history.all()] == [clinician]


def test_it_takes_a_lot_that_was_in_date_on_the_day_of_a_back_dated_procedure(client, clinician, plan, clinic_a):
    patient, version, _ = plan
    screening = ScreeningFactory(patient=patient, protocol_version=version, planned_for=dt.date(2026, 4, 30),
                                 run_at=dt.datetime(2026, 4, 28, 9, tzinfo=UTC))
    lot = LotFactory(product=ProductFactory(clinic=clinic_a), received_date=dt.date(2026, 1, 1),
                     expiry_date=dt.date(2026, 5, 2))
    client.force_login(clinician)
    # Recorded on 4 May for a procedure done on 30 April, two days before the lot expired.
    response = client.post(
        f"{ADD}?patient={patient.pk}",
        form_data(screening, started_at="2026-04-30T10:00", ended_at="2026-04-30T10:45",
                  **{"applications-0-lot": lot.pk, "applications-0-volume_ml": "2"}),
    )
    assert response.status_code == 302
    assert Treatment.objects.get().applications.get().lot == lot


def test_it_says_which_lot_had_expired_by_the_day_of_the_procedure(client, clinician, plan, clinic_a):
    _patient, _version, screening = plan
    lot = LotFactory(product=ProductFactory(clinic=clinic_a), received_date=dt.date(2026, 1, 1),
                     expiry_date=dt.date(2026, 5, 2))
    client.force_login(clinician)
    response = client.post(  # a procedure done today, 4 May
        f"{ADD}?patient={screening.patient_id}",
        form_data(screening, **{"applications-0-lot": lot.pk, "applications-0-volume_ml": "2"}),
    )
    assert response.status_code == 400
    assert f"Lot {lot.lot_number} expired on 2026-05-02." in response.content.decode()
    assert not Treatment.objects.exists()


def test_it_shows_the_services_errors_and_records_nothing(client, clinician, plan):
    _patient, _version, screening = plan
    client.force_login(clinician)
    response = client.post(f"{ADD}?patient={screening.patient_id}",
                           form_data(screening, started_at="2026-05-04T10:30"))
    assert response.status_code == 400
    assert "The procedure cannot end before it started." in response.content.decode()
    assert not Treatment.objects.exists()



@pytest.mark.parametrize(
    ("device_settings", "field"),
    [({"needle_depth_mm": "-1"}, "needle_depth_mm"), ({"needle_depth_mm": "12"}, "needle_depth_mm"),
     ({"passes": "0"}, "passes")],
)
def test_it_refuses_impossible_device_settings_on_their_fields(client, clinician, plan, device_settings, field):
    _patient, _version, screening = plan
    client.force_login(clinician)
    response = client.post(f"{ADD}?patient={screening.patient_id}", form_data(screening, **device_settings))
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert not Treatment.objects.exists()


def test_it_refuses_a_screening_run_after_the_procedure_started_on_the_screening_field(client, clinician, plan):
    patient, version, _ = plan
    # Run at 10:20 at the London clinic, where the form says the procedure started at 09:15.
    late = ScreeningFactory(patient=patient, protocol_version=version, run_at=NOW - dt.timedelta(minutes=10))
    client.force_login(clinician)
    response = client.post(f"{ADD}?patient={patient.pk}", form_data(late))
    assert response.status_code == 400
    message = ("The screening was run at 10:20, after the procedure started (09:15); a screening must precede "
               "treatment. Clinic time (Europe/London).")
    assert response.context["form"].errors["screening"] == [message]
    assert message in response.content.decode()
    assert not Treatment.objects.exists()
    assert not Reminder.objects.exists()


def test_it_takes_a_screening_run_in_the_minute_typed_as_the_procedure_start(client, clinician, plan):
    patient, version, _ = plan
    screening = ScreeningFactory(patient=patient, protocol_version=version,
                                 run_at=dt.datetime(2026, 5, 4, 8, 15, 40, tzinfo=UTC))  # 09:15:40 in London
    client.force_login(clinician)
    response = client.post(f"{ADD}?patient={patient.pk}", form_data(screening))  # started "09:15"
    assert response.status_code == 302
    assert Treatment.objects.get().screening == screening

def test_it_lets_only_clinicians_record(client, coordinator, plan):
    client.force_login(coordinator)
    assert client.get(ADD).status_code == 403


def test_it_refuses_another_clinics_patient(client, clinician_b, plan):
    _patient, _version, screening = plan
    client.force_login(clinician_b)
    response = client.post(f"{ADD}?patient={screening.patient_id}", form_data(screening))
    assert response.status_code == 400
    assert not Treatment.objects.exists()


def record(plan, clinician):
    from patients.treatments import record_treatment

    patient, version, screening = plan
    return record_treatment(patient=patient, protocol_version=version, screening=screening, clinician=clinician,
                            started_at=NOW - dt.timedelta(hours=1), ended_at=NOW - dt.timedelta(minutes=30),
                            areas="full face")


def test_it_shows_the_timeline_with_errors_and_resends_or_cancels_one_reminder(client, clinician, coordinator, plan):
    treatment = record(plan, clinician)
    first, second = treatment.reminders.order_by("due_at")
    # A temporary failure that used up its attempts: resending it may well work (a refused address may not).
    error = "451 4.3.0 Mailbox temporarily unavailable (gave up after 5 attempts)"
    Reminder.objects.filter(pk=first.pk).update(status=Status.FAILED, attempts=5, last_error=error)
    client.force_login(coordinator)
    page = client.get(reverse("admin:patients_treatment_change", args=[treatment.pk]))
    body = page.content.decode()
    assert page.status_code == 200
    assert error in body
    assert 'data-state="failed"' in body and 'data-state="upcoming"' in body
    assert "Mon 2026-05-04 20:00" in body  # the patient's wall clock
    action = "admin:patients_treatment_reminder_action"
    assert client.post(reverse(action, args=[treatment.pk, first.pk, "resend"])).status_code == 302
    assert client.post(reverse(action, args=[treatment.pk, second.pk, "cancel"])).status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.resend_count) == (Status.SCHEDULED, 1)
    assert second.status == Status.CANCELLED
    response = client.post(reverse(action, args=[treatment.pk, second.pk, "resend"]), follow=True)
    second.refresh_from_db()
    assert second.status == Status.SCHEDULED
    assert f"will be sent at its time, {second.due_at.astimezone(BERLIN):%a %Y-%m-%d %H:%M} (patient's time)" in (
        html.unescape(response.content.decode())
    )


def test_it_hides_another_clinics_treatment_and_its_reminders(client, clinician, clinician_b, plan):
    treatment = record(plan, clinician)
    reminder = treatment.reminders.first()
    client.force_login(clinician_b)
    page = client.get(reverse("admin:patients_treatment_change", args=[treatment.pk]))
    assert page.status_code in (302, 404)  # "does not exist", never the page
    assert treatment.patient.family_name not in page.content.decode()
    action = reverse("admin:patients_treatment_reminder_action", args=[treatment.pk, reminder.pk, "cancel"])
    assert client.post(action).status_code == 404
    assert client.get(reverse("admin:patients_treatment_reschedule", args=[treatment.pk])).status_code == 404
    listing = client.get("/admin/patients/reminder/")
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 0
    reminder.refresh_from_db()
    assert reminder.status == Status.SCHEDULED


def test_it_filters_the_treatment_list_by_patient_for_the_patient_page(client, clinician, plan, clinic_a):
    treatment = record(plan, clinician)
    other = record(treatable_patient(clinic_a, steps=[]), clinician)
    client.force_login(clinician)
    listing = client.get("/admin/patients/treatment/", {"patient__id__exact": treatment.patient_id})
    assert listing.status_code == 200
    assert list(listing.context["cl"].result_list) == [treatment]
    assert "0 sent, 2 pending" in listing.content.decode()
    assert other not in listing.context["cl"].result_list


def test_it_reschedules_and_cancels_from_their_own_pages(client, clinician, plan):
    treatment = record(plan, clinician)
    client.force_login(clinician)
    reschedule = reverse("admin:patients_treatment_reschedule", args=[treatment.pk])
    assert client.get(reschedule).status_code == 200
    response = client.post(reschedule, {"started_at": "2026-05-04T08:00", "ended_at": "2026-05-04T08:45"})
    assert response.status_code == 302
    treatment.refresh_from_db()
    assert treatment.ended_at == dt.datetime(2026, 5, 4, 7, 45, tzinfo=UTC)
    cancel = reverse("admin:patients_treatment_cancel", args=[treatment.pk])
    assert client.post(cancel, {"reason": ""}).status_code == 400
    refused = client.post(cancel, {"reason": "ok"})
    assert refused.status_code == 400
    assert refused.context["form"].errors["reason"] == [
        "Say why the treatment is cancelled, in a few words (at least 10 characters), e.g. “recorded on the wrong "
        "patient”: the reason stays with the record."
    ]
    assert client.post(cancel, {"reason": "Recorded on the wrong patient"}).status_code == 302
    # Once cancelled, its cancel page says so and offers no form.
    again = client.get(cancel, follow=True)
    assert again.redirect_chain[-1][0] == reverse("admin:patients_treatment_change", args=[treatment.pk])
    assert "This treatment was already cancelled on" in again.content.decode()
    treatment.refresh_from_db()
    assert treatment.status == Treatment.Status.CANCELLED
    assert set(treatment.reminders.values_list("status", flat=True)) == {Status.CANCELLED}


# --- a screening is for the day of the procedure ---------------------------------------------------


def test_it_refuses_a_screening_planned_for_another_day_on_the_screening_field(client, clinician, plan):
    patient, version, _ = plan
    later = ScreeningFactory(patient=patient, protocol_version=version, planned_for=dt.date(2026, 6, 3))
    client.force_login(clinician)
    page = client.get(ADD, {"patient": patient.pk})
    assert "for a procedure on 2026-06-03" in page.content.decode()  # the list names each screening's day
    response = client.post(f"{ADD}?patient={patient.pk}", form_data(later))
    assert response.status_code == 400
    message = ("The screening was run for a procedure on 2026-06-03, but this procedure started on 2026-05-04 "
               "(clinic time, Europe/London); screen the patient again for 2026-05-04.")
    assert response.context["form"].errors["screening"] == [message]
    assert not Treatment.objects.exists()


def test_it_records_yesterdays_procedure_today_on_yesterdays_screening(client, clinician, plan):
    patient, version, _ = plan
    yesterdays = ScreeningFactory(patient=patient, protocol_version=version, run_at=NOW - dt.timedelta(days=2),
                                  planned_for=dt.date(2026, 5, 3))
    client.force_login(clinician)
    assert yesterdays in client.get(ADD, {"patient": patient.pk}).context["form"].fields["screening"].queryset
    response = client.post(f"{ADD}?patient={patient.pk}", form_data(
        yesterdays, started_at="2026-05-03T09:15", ended_at="2026-05-03T10:00",
    ))
    assert response.status_code == 302
    assert Treatment.objects.get().screening == yesterdays


def test_it_refuses_to_reschedule_to_another_day_and_says_to_screen_again(client, clinician, plan):
    patient, version, _ = plan
    # Run three days before: it precedes the day before too, so only its planned day stands in the way.
    early = ScreeningFactory(patient=patient, protocol_version=version, run_at=NOW - dt.timedelta(days=3))
    treatment = record((patient, version, early), clinician)
    client.force_login(clinician)
    reschedule = reverse("admin:patients_treatment_reschedule", args=[treatment.pk])
    assert "screen the patient again for that day" in client.get(reschedule).content.decode()
    response = client.post(reschedule, {"started_at": "2026-05-03T08:00", "ended_at": "2026-05-03T08:45"})
    assert response.status_code == 400
    assert response.context["form"].errors["started_at"] == [
        "The screening was run for a procedure on 2026-05-04, but this procedure started on 2026-05-03 "
        "(clinic time, Europe/London); screen the patient again for 2026-05-03."
    ]
    treatment.refresh_from_db()
    assert treatment.ended_at == NOW - dt.timedelta(minutes=30)


# --- a lot recalled after it was applied -----------------------------------------------------------


def test_it_records_a_lot_recalled_after_the_procedure_and_says_the_patient_is_on_the_recall_list(
    client, clinician, plan, clinic_a
):
    _patient, _version, screening = plan
    # The procedure ended at 09:00 UTC; the recall was entered at 09:30, before the treatment was recorded.
    lot = LotFactory(product=ProductFactory(clinic=clinic_a, name="Exo A"), lot_number="LATE-RECALL",
                     recalled=True, recall_reason="Endotoxin above limit", recalled_at=NOW)
    client.force_login(clinician)
    page = client.get(ADD, {"patient": screening.patient_id})
    field = page.context["applications"].forms[0].fields["lot"]
    assert [label for value, label in field.choices if value] == [
        f"{lot} — recalled 2026-05-04, only for a procedure before the recall"
    ]

    response = client.post(
        f"{ADD}?patient={screening.patient_id}",
        form_data(screening, **{"applications-0-lot": lot.pk, "applications-0-volume_ml": "2"}), follow=True,
    )

    treatment = Treatment.objects.get()
    assert treatment.applications.get().lot == lot
    page = response.content.decode()
    assert ("Lot LATE-RECALL of Exo A was recalled on 2026-05-04 (Endotoxin above limit). This patient received it "
            "before the recall") in page
    assert "The lot and every patient who received it" in page  # the banner on the treatment's page
    lot_page = client.get(reverse("admin:protocols_productlot_change", args=[lot.pk]))
    assert treatment in [application.treatment for application in lot_page.context["lot_applications"]]


def test_it_refuses_a_recalled_lot_applied_after_the_recall_was_entered(client, clinician, plan, clinic_a):
    _patient, _version, screening = plan
    lot = LotFactory(product=ProductFactory(clinic=clinic_a), recalled=True, recall_reason="Cold chain broken",
                     recalled_at=NOW - dt.timedelta(minutes=50))  # 08:40 UTC, during the procedure
    client.force_login(clinician)
    response = client.post(
        f"{ADD}?patient={screening.patient_id}",
        form_data(screening, **{"applications-0-lot": lot.pk, "applications-0-volume_ml": "2"}),
    )
    assert response.status_code == 400
    assert f"Lot {lot.lot_number} has been recalled (since 2026-05-04)." in response.content.decode()
    assert not Treatment.objects.exists()


def test_the_treatment_page_names_a_lot_recalled_after_the_treatment_was_recorded(client, clinician, plan, clinic_a):
    _patient, _version, screening = plan
    lot = LotFactory(product=ProductFactory(clinic=clinic_a), lot_number="L-9")
    client.force_login(clinician)
    client.post(f"{ADD}?patient={screening.patient_id}",
                form_data(screening, **{"applications-0-lot": lot.pk, "applications-0-volume_ml": "2"}))
    treatment = Treatment.objects.get()
    url = reverse("admin:patients_treatment_change", args=[treatment.pk])
    assert "recalled-lot" not in client.get(url).content.decode()

    lot.recalled, lot.recall_reason = True, "Sterility failure"
    lot.save()

    page = client.get(url).content.decode()
    assert "recalled-lot" in page
    assert "was recalled on 2026-05-04: Sterility failure." in page
