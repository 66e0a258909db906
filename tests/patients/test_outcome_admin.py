"""The outcome admin: clinicians enter and correct scores, everyone in the clinic views, nobody else sees anything."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from patients.models import AdverseEvent, OutcomeAssessment, OutcomePhoto, TreatmentArm
from patients.outcomes import record_assessment
from tests.factories import TreatmentFactory, UserFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)
ADD = reverse("admin:patients_outcomeassessment_add")
LIST = reverse("admin:patients_outcomeassessment_changelist")


@pytest.fixture(autouse=True)
def setup(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "media"
    with time_machine.travel(NOW, tick=False):
        yield


def _treatment(clinic):
    ended = NOW - dt.timedelta(days=10)
    return TreatmentFactory(screening__patient__clinic=clinic, started_at=ended - dt.timedelta(hours=1), ended_at=ended)


@pytest.fixture
def treatment(clinic_a):
    return _treatment(clinic_a)


def _form(treatment, **overrides):
    data = {
        "treatment": str(treatment.pk), "arm": "", "time_point_day": "3", "phase": "", "erythema": "2", "oedema": "1",
        "reepithelialisation_complete": "unknown", "reepithelialisation_percent": "", "pain": "4", "pruritus": "",
        "gais": "", "notes": "", "correction_reason": "",
        "photos-TOTAL_FORMS": "0", "photos-INITIAL_FORMS": "0", "photos-MIN_NUM_FORMS": "0", "photos-MAX_NUM_FORMS": "1000",
    }
    return {**data, **overrides}


def test_the_add_form_shows_the_cea_anchor_words(client, clinician, treatment):
    client.force_login(clinician)
    body = client.get(ADD + f"?treatment={treatment.pk}").content.decode()
    for words in ["0 — clear — clear skin with no signs of erythema", "2 — mild — mild erythema, definite redness",
                  "4 — severe — fiery redness", "Erythema Assessment (CEA)"]:
        assert words in body


def _offered_day(client, treatment) -> tuple[int | None, str]:
    response = client.get(ADD + f"?treatment={treatment.pk}")
    return response.context["adminform"].form.initial.get("time_point_day"), response.content.decode()


def test_log_outcomes_offers_the_protocols_days_and_the_one_that_is_due(client, clinician, treatment):
    # Ten days after the procedure, with the default time points 0, 1, 3, 7, 14, 28.
    client.force_login(clinician)
    day, body = _offered_day(client, treatment)
    assert day == 7
    assert '<datalist id="time-point-days"><option value="0">day 0</option>' in body
    assert "This protocol assesses on days 0, 1, 3, 7, 14 and 28." in body
    record_assessment(treatment=treatment, by=clinician, time_point_day=7, scores={"erythema": 1})
    assert _offered_day(client, treatment)[0] == 3  # day 3 was missed: offered next
    for past in (0, 1, 3):
        record_assessment(treatment=treatment, by=clinician, time_point_day=past, scores={"erythema": 1},
                          phase="after" if past == 0 else "")
    assert _offered_day(client, treatment)[0] == 14  # all done so far: the next to come


@pytest.mark.parametrize(("days", "text"), [([3], "day 3"), ([0, 3], "days 0 and 3"), ([0, 1, 3], "days 0, 1 and 3")])
def test_the_time_points_read_as_english(days, text):
    from patients.admin.outcomes import _days

    assert _days(days) == text


def test_log_outcomes_reads_the_named_treatment_once(client, clinician, treatment):
    # The form (its time points) and its initial data (the day that is due) both need the
    # ?treatment= treatment with its protocol version: one query serves both.
    client.force_login(clinician)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(ADD + f"?treatment={treatment.pk}").status_code == 200
    lookups = [query["sql"] for query in queries.captured_queries
               if query["sql"].startswith('SELECT "patients_treatment"."id"')
               and 'INNER JOIN "protocols_protocolversion"' in query["sql"]
               and f'"patients_treatment"."id" = {treatment.pk}' in query["sql"]]
    assert len(lookups) == 1, lookups


def test_log_outcomes_offers_nothing_for_another_clinics_treatment(client, clinician_b, treatment):
    client.force_login(clinician_b)
    day, body = _offered_day(client, treatment)
    assert day is None
    assert "time-point-days" not in body


def test_a_clinician_enters_scores_through_the_admin(client, clinician, treatment):
    client.force_login(clinician)
    response = client.post(ADD, _form(treatment))
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    assert response["Location"] == reverse("admin:patients_treatment_change", args=[treatment.pk])  # back to it
    entry = OutcomeAssessment.objects.get()
    assert (entry.erythema, entry.oedema, entry.pain, entry.recorded_by) == (2, 1, 4, clinician)
    another = client.post(ADD, _form(treatment, time_point_day="7", _addanother="1"))
    assert another["Location"].startswith(ADD)  # "Save and add another" still does


def test_out_of_range_scores_show_on_the_form_and_nothing_is_stored(client, clinician, treatment):
    client.force_login(clinician)
    response = client.post(ADD, _form(treatment, pain="14", time_point_day="30"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "pain" in errors
    assert not OutcomeAssessment.objects.exists()
    response = client.post(ADD, _form(treatment, time_point_day="30"))
    assert "has not come yet" in str(response.context["adminform"].form.errors)
    assert not OutcomeAssessment.objects.exists()


def test_a_time_point_already_scored_leads_to_that_entry(client, clinician, treatment):
    client.force_login(clinician)
    assert client.post(ADD, _form(treatment)).status_code == 302
    entry = OutcomeAssessment.objects.get()
    response = client.post(ADD, _form(treatment, erythema="3"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Scores for day 3 are already recorded; correct that entry instead." in body
    change = reverse("admin:patients_outcomeassessment_change", args=[entry.pk])
    assert f'<a href="{change}" id="recorded-entry">Open that entry</a>' in body
    assert OutcomeAssessment.objects.count() == 1


def test_a_photo_that_is_not_an_image_is_refused_on_the_form(client, clinician, treatment):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(clinician)
    response = client.post(ADD, {**_form(treatment), "photo": SimpleUploadedFile("a.jpg", b"MZ\x90\x00 windows exe")})
    assert "not a photo we can read" in str(response.context["adminform"].form.errors)
    assert not OutcomeAssessment.objects.exists()
    assert not OutcomePhoto.objects.exists()


def _opened(client, url) -> str:
    """The revision a change page carries in its form, as a browser would send it back."""
    return client.get(url).context["adminform"].form["opened_revision"].value()


def _correction_form(treatment, **overrides):
    data = _form(treatment, **overrides)
    data.pop("treatment")  # read-only on the change page
    return data


def test_a_correction_needs_a_reason_and_keeps_the_original_in_history(client, clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    client.force_login(clinician)
    url = reverse("admin:patients_outcomeassessment_change", args=[entry.pk])
    data = _correction_form(treatment, erythema="1", opened_revision=_opened(client, url))
    response = client.post(url, data)
    assert response.status_code == 200
    assert "correction_reason" in response.context["adminform"].form.errors
    response = client.post(url, {**data, "correction_reason": "Scored before cleansing"})
    assert response.status_code == 302
    entry.refresh_from_db()
    assert entry.erythema == 1
    assert list(entry.history.order_by("history_id").values_list("erythema", flat=True)) == [3, 1]
    history = client.get(reverse("admin:patients_outcomeassessment_history", args=[entry.pk]))
    assert history.status_code == 200
    assert "Scored before cleansing" in history.content.decode()


def test_a_second_tab_cannot_undo_a_colleagues_correction(client, clinician, clinic_a, treatment):
    from clinic.models import Role
    from tests.factories import staff

    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 2, "pain": 3})
    url = reverse("admin:patients_outcomeassessment_change", args=[entry.pk])
    colleague = staff(Role.CLINICIAN, clinic_a, username="dr_okafor", first_name="Ada", last_name="Okafor")
    client.force_login(clinician)
    opened_first = _opened(client, url)  # this tab stays open while the colleague corrects erythema
    client.force_login(colleague)
    theirs = _correction_form(treatment, erythema="4", pain="3", oedema="", opened_revision=_opened(client, url),
                              correction_reason="Photo shows severe")
    assert client.post(url, theirs).status_code == 302

    client.force_login(clinician)
    mine = _correction_form(treatment, erythema="2", pain="6", oedema="", opened_revision=opened_first,
                            correction_reason="Pain was 6")
    response = client.post(url, mine)

    assert response.status_code == 200
    body = response.content.decode()
    assert ("Ada Okafor changed this record on 20 Mar 2026 at 12:00 after you opened it (reason given: Photo shows "
            "severe). Nothing was saved: reload it to see that change, then make yours again.") in body
    assert f'<a href="{url}" id="reload-record">Reload this page</a>' in body
    entry.refresh_from_db()
    assert (entry.erythema, entry.pain) == (4, 3)  # the colleague's correction stands; nothing of this one was saved
    assert entry.history.count() == 2
    # Reloaded, the page carries the new revision, and the correction goes through on top of theirs.
    mine["opened_revision"] = _opened(client, url)
    mine["erythema"] = "4"
    assert client.post(url, mine).status_code == 302
    entry.refresh_from_db()
    assert (entry.erythema, entry.pain) == (4, 6)


def test_a_change_page_without_its_revision_saves_nothing(client, clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    client.force_login(clinician)
    url = reverse("admin:patients_outcomeassessment_change", args=[entry.pk])
    response = client.post(url, _correction_form(treatment, erythema="1", correction_reason="Scored too early"))
    assert "reload the page and make your change again" in str(response.context["adminform"].form.errors)
    entry.refresh_from_db()
    assert entry.erythema == 3


def test_a_coordinator_views_but_cannot_enter_or_change_scores(client, coordinator, clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    client.force_login(coordinator)
    assert client.get(LIST).status_code == 200
    assert client.get(ADD).status_code == 403
    url = reverse("admin:patients_outcomeassessment_change", args=[entry.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert 'name="erythema"' not in page.content.decode()
    client.post(url, _form(treatment, erythema="0", correction_reason="Scored too early"))
    entry.refresh_from_db()
    assert entry.erythema == 3


def test_a_patient_report_is_read_only_even_for_clinicians(client, clinician, treatment):
    report = OutcomeAssessment.objects.create(treatment=treatment, time_point_day=3, source="patient", erythema=2)
    client.force_login(clinician)
    page = client.get(reverse("admin:patients_outcomeassessment_change", args=[report.pk])).content.decode()
    assert 'name="erythema"' not in page
    assert "The patient&#x27;s answers" in page


def test_another_clinics_entries_are_invisible(client, clinician_b, clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    client.force_login(clinician_b)
    listing = client.get(LIST)
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 0
    change = client.get(reverse("admin:patients_outcomeassessment_change", args=[entry.pk]))
    assert change.status_code in (302, 404)  # "does not exist", never the entry
    assert client.get(reverse("admin:patients_outcomeassessment_history", args=[entry.pk])).status_code == 404


def test_a_clinician_of_another_clinic_cannot_enter_scores_for_its_treatment(client, clinician_b, treatment):
    client.force_login(clinician_b)
    response = client.post(ADD, _form(treatment))
    assert response.status_code == 200
    assert "treatment" in response.context["adminform"].form.errors
    assert not OutcomeAssessment.objects.exists()


def test_the_add_forms_name_no_treatment_of_another_clinic(client, clinician, clinician_b, treatment):
    """The treatment box labels the id it is given (``?treatment=``, or a posted form): only within the clinic."""
    name = treatment.patient.given_name
    events_add = reverse("admin:patients_adverseevent_add")
    client.force_login(clinician)
    assert name in client.get(ADD + f"?treatment={treatment.pk}").content.decode()
    client.force_login(clinician_b)
    for response in (
        client.get(ADD + f"?treatment={treatment.pk}"),
        client.post(ADD, _form(treatment)),
        client.get(events_add + f"?treatment={treatment.pk}"),
    ):
        assert response.status_code == 200
        assert name not in response.content.decode()


def test_the_changelist_query_count_does_not_grow_with_rows(client, clinician, clinic_a, django_assert_max_num_queries):
    def build(n):
        for _ in range(n):
            treatment = _treatment(clinic_a)
            arm = TreatmentArm.objects.create(treatment=treatment, label="left")
            TreatmentArm.objects.create(treatment=treatment, label="right", is_control=True)
            record_assessment(treatment=treatment, by=clinician, time_point_day=3, arm=arm, scores={"erythema": 2})

    client.force_login(clinician)
    build(2)
    client.get(LIST)  # warm the session
    with django_assert_max_num_queries(40) as few:
        assert client.get(LIST).status_code == 200
    build(15)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(LIST)
    assert response.context["cl"].result_count == 17


# --- adverse events --------------------------------------------------------------------------------


def _event_form(treatment, **overrides):
    data = {
        "treatment": str(treatment.pk), "arm": "", "kind": "infection", "severity": "moderate",
        "onset_date": "2026-03-18", "resolution_date": "", "description": "", "action_taken": "Oral antibiotics",
        "correction_reason": "",
    }
    return {**data, **overrides}


def test_a_clinician_records_an_adverse_event_and_colleagues_are_emailed(
    client, clinician, treatment, mailoutbox, django_capture_on_commit_callbacks, alerts_sent_at_once
):
    client.force_login(clinician)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:patients_adverseevent_add"), _event_form(treatment))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:patients_treatment_change", args=[treatment.pk])
    event = AdverseEvent.objects.get()
    assert (event.kind, event.recorded_by, event.notified_at) == ("infection", clinician, NOW)
    assert [m.to for m in mailoutbox] == [[clinician.email]]


def test_the_treatment_page_leads_to_an_adverse_event_form_for_that_treatment(client, clinician, treatment):
    other = TreatmentFactory(screening__patient__clinic=treatment.clinic)
    left = TreatmentArm.objects.create(treatment=treatment, label="Left", is_control=False)
    TreatmentArm.objects.create(treatment=other, label="Right", is_control=True)
    client.force_login(clinician)
    page = client.get(reverse("admin:patients_treatment_change", args=[treatment.pk])).content.decode()
    add = reverse("admin:patients_adverseevent_add") + f"?treatment={treatment.pk}"
    assert f'href="{add}" id="record-adverse-event"' in page
    form = client.get(add).context["adminform"].form
    assert form.initial["treatment"] == str(treatment.pk)
    assert list(form.fields["arm"].queryset) == [left]  # that treatment's sides only
    response = client.post(add, _event_form(treatment, severity="mild", action_taken=""))
    assert response.status_code == 302
    assert str(AdverseEvent.objects.get()) == "Infection (mild), onset 2026-03-18"


def test_a_double_submitted_adverse_event_is_stored_and_emailed_once(
    client, clinician, treatment, mailoutbox, django_capture_on_commit_callbacks, alerts_sent_at_once
):
    client.force_login(clinician)
    add = reverse("admin:patients_adverseevent_add")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(add, _event_form(treatment, severity="severe")).status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(add, _event_form(treatment, severity="severe"))  # the second click

    assert again.status_code == 200
    event = AdverseEvent.objects.get()
    body = again.content.decode()
    assert ("This adverse event is already recorded: Infection (severe), onset 18 Mar 2026, recorded by clinician_a on "
            "20 Mar 2026 at 12:00. Nothing was saved.") in body
    change = reverse("admin:patients_adverseevent_change", args=[event.pk])
    assert f'<a href="{change}" id="recorded-event">Open that event</a>' in body
    assert len(mailoutbox) == 1


def test_two_different_adverse_events_of_one_day_are_both_recorded(client, clinician, treatment):
    client.force_login(clinician)
    add = reverse("admin:patients_adverseevent_add")
    assert client.post(add, _event_form(treatment)).status_code == 302
    assert client.post(add, _event_form(treatment, kind="contact_dermatitis")).status_code == 302
    assert client.post(add, _event_form(treatment, description="A second pustule, left jawline")).status_code == 302
    assert AdverseEvent.objects.count() == 3


def test_a_second_tab_cannot_undo_a_change_to_an_adverse_event(client, clinician, treatment):
    client.force_login(clinician)
    assert client.post(reverse("admin:patients_adverseevent_add"), _event_form(treatment)).status_code == 302
    event = AdverseEvent.objects.get()
    url = reverse("admin:patients_adverseevent_change", args=[event.pk])
    first_tab = client.get(url).context["adminform"].form["opened_revision"].value()
    second_tab = client.get(url).context["adminform"].form["opened_revision"].value()
    edit = _event_form(treatment)
    edit.pop("treatment")
    resolved = {**edit, "resolution_date": "2026-03-20", "correction_reason": "Resolved at review", "opened_revision": first_tab}
    assert client.post(url, resolved).status_code == 302

    worse = {**edit, "severity": "severe", "correction_reason": "Spreading to the neck", "opened_revision": second_tab}
    response = client.post(url, worse)

    assert "You (in another tab or window) changed this record on 20 Mar 2026 at 12:00" in response.content.decode()
    event.refresh_from_db()
    assert (event.severity, event.resolution_date) == ("moderate", NOW.date())


def test_a_bad_adverse_event_shows_errors_and_stores_nothing(client, clinician, treatment):
    client.force_login(clinician)
    response = client.post(
        reverse("admin:patients_adverseevent_add"), _event_form(treatment, onset_date="2026-01-01", kind="other")
    )
    errors = response.context["adminform"].form.errors
    assert "onset_date" in errors
    assert not AdverseEvent.objects.exists()


def test_adverse_events_of_another_clinic_are_invisible(client, clinician_b, treatment):
    AdverseEvent.objects.create(
        treatment=treatment, kind="pih", severity="mild", onset_date=NOW.date(), recorded_by=UserFactory()
    )
    client.force_login(clinician_b)
    assert client.get(reverse("admin:patients_adverseevent_changelist")).context["cl"].result_count == 0


def test_the_photo_list_shows_thumbnails_of_the_clinics_photos_only(client, clinician, clinician_b, treatment):
    import io

    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    from patients.photos import store_photo

    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buffer, format="JPEG")
    photo = store_photo(assessment=entry, photo=SimpleUploadedFile("p.jpg", buffer.getvalue()), uploaded_by=clinician)
    client.force_login(clinician)
    page = client.get(reverse("admin:patients_outcomephoto_changelist")).content.decode()
    assert reverse("patients:photo-thumbnail", args=[photo.pk]) in page
    inline = client.get(reverse("admin:patients_outcomeassessment_change", args=[entry.pk])).content.decode()
    assert reverse("patients:photo-download", args=[photo.pk]) in inline
    client.force_login(clinician_b)
    assert client.get(reverse("admin:patients_outcomephoto_changelist")).context["cl"].result_count == 0


def test_opening_an_entry_is_in_the_access_log(client, auditor, clinician, treatment):
    from clinic.models import AuditEvent

    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    client.force_login(auditor)
    client.get(reverse("admin:patients_outcomeassessment_change", args=[entry.pk]))
    assert AuditEvent.objects.filter(action="view", actor=auditor, object_id=str(entry.pk)).count() == 1


def test_the_adverse_event_and_photo_lists_keep_a_flat_query_count(
    client, clinician, clinic_a, django_assert_max_num_queries
):
    import io

    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    from patients.photos import store_photo

    def build(n):
        for _ in range(n):
            treatment = _treatment(clinic_a)
            arm = TreatmentArm.objects.create(treatment=treatment, label="left")
            AdverseEvent.objects.create(
                treatment=treatment, arm=arm, kind="milia", severity="moderate", onset_date=NOW.date(), recorded_by=clinician
            )
            entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, arm=arm, scores={"erythema": 1})
            buffer = io.BytesIO()
            Image.new("RGB", (20, 20)).save(buffer, format="JPEG")
            store_photo(assessment=entry, photo=SimpleUploadedFile("p.jpg", buffer.getvalue()), uploaded_by=clinician)

    client.force_login(clinician)
    build(2)
    counts = {}
    for name in ["admin:patients_adverseevent_changelist", "admin:patients_outcomephoto_changelist"]:
        client.get(reverse(name))
        with django_assert_max_num_queries(40) as few:
            client.get(reverse(name))
        counts[name] = len(few.captured_queries)
    build(10)
    for name, count in counts.items():
        with django_assert_max_num_queries(count):
            assert client.get(reverse(name)).context["cl"].result_count == 12


def test_the_resend_action_emails_about_events_not_yet_notified(
    client, clinician, treatment, mailoutbox, alerts_sent_at_once, django_capture_on_commit_callbacks
):
    # Saved before alerts were kept (or whose alert was sent and then lost with a restored backup): none on its way.
    event = AdverseEvent.objects.create(
        treatment=treatment, kind="infection", severity="severe", onset_date=NOW.date(), recorded_by=clinician
    )
    mild = AdverseEvent.objects.create(
        treatment=treatment, kind="milia", severity="mild", onset_date=NOW.date(), recorded_by=clinician
    )
    client.force_login(clinician)
    for _ in range(2):  # the second time, the event is notified: nobody is emailed again
        with django_capture_on_commit_callbacks(execute=True):
            client.post(
                reverse("admin:patients_adverseevent_changelist"),
                {"action": "send_notification", "_selected_action": [event.pk, mild.pk]},
            )
    assert len(mailoutbox) == 1
    event.refresh_from_db()
    assert event.notified_at == NOW
    assert list(event.alerts.values_list("status", flat=True)) == ["sent"]


def test_correcting_an_entry_offers_only_the_arms_of_its_own_treatment(client, clinician, clinic_a, treatment):
    from patients.models import AdverseEvent, OutcomeAssessment, TreatmentArm

    split = _treatment(clinic_a)
    TreatmentArm.objects.create(treatment=split, label="Left", is_control=False)
    own = TreatmentArm.objects.create(treatment=treatment, label="Right", is_control=False)
    entry = OutcomeAssessment.objects.create(treatment=treatment, time_point_day=3, recorded_by=clinician, erythema=1)
    event = AdverseEvent.objects.create(treatment=treatment, kind="infection", severity="mild",
                                        onset_date=NOW.date(), recorded_by=clinician)
    client.force_login(clinician)
    for url in (f"/admin/patients/outcomeassessment/{entry.pk}/change/", f"/admin/patients/adverseevent/{event.pk}/change/"):
        page = client.get(url)
        assert list(page.context["adminform"].form.fields["arm"].queryset) == [own], url


def test_a_self_report_reads_as_the_patients_own_rating_not_a_cea_score(client, clinician, treatment):
    from patients.models import OutcomeAssessment

    report = OutcomeAssessment.objects.create(
        treatment=treatment, time_point_day=3, source=OutcomeAssessment.Source.PATIENT, erythema=4, pain=8
    )
    client.force_login(clinician)
    page = client.get(f"/admin/patients/outcomeassessment/{report.pk}/change/").content.decode()
    assert "Redness (the patient&#x27;s own rating, not a CEA score)" in page
    assert "4 — Severe: Deep, intense red; it may feel hot or burn." in page
    assert "Erythema (CEA)" not in page and "Clinician&#x27;s Erythema Assessment" not in page
    listing = client.get(LIST).content.decode()
    assert "4 — Severe (patient&#x27;s rating)" in listing
