"""Give history rows the patient saved before the patient-link services gave change reasons the reason
they give now, so the history page names the patient instead of "—" (clinic.history.PATIENT_REASONS).

Only rows with no user and no reason whose own fields prove the patient saved them:
- an outcome assessment created with source "patient" through a link (via_link set, no recorded_by): only
  the self-report service creates those; the demo seed's patient reports have no link and are left;
- an intake created with source "patient_link" and no recorded_by: only the intake link's view;
- a patient's change whose opted_out_at went from empty to set: only unsubscribing sets it (it is read-only
  in the admin and the API).
A later change to a patient's report without a reason is left as it is: the patient's corrections have
carried their reason since self-reports began, and nothing in the row tells a correction from a task's or a
command's change.
"""

from django.db import migrations
from django.db.models import Exists, OuterRef, Q, Subquery

# Copied from clinic.history when this was written: a migration must not follow later edits of the app.
SENT_BY_PATIENT = "Sent by the patient through their link"
INTAKE_BY_PATIENT = "Answered by the patient through their intake link"
UNSUBSCRIBED_BY_PATIENT = "Unsubscribed by the patient through the link in an email"

NO_ONE_AND_NO_REASON = Q(history_user__isnull=True) & (Q(history_change_reason__isnull=True) | Q(history_change_reason=""))


def name_the_patient(apps, schema_editor):
    HistoricalOutcomeAssessment = apps.get_model("patients", "HistoricalOutcomeAssessment")
    HistoricalIntake = apps.get_model("patients", "HistoricalIntake")
    HistoricalPatient = apps.get_model("patients", "HistoricalPatient")

    HistoricalOutcomeAssessment.objects.filter(
        NO_ONE_AND_NO_REASON, history_type="+", source="patient", via_link__isnull=False, recorded_by__isnull=True
    ).update(history_change_reason=SENT_BY_PATIENT)

    HistoricalIntake.objects.filter(
        NO_ONE_AND_NO_REASON, history_type="+", source="patient_link", recorded_by__isnull=True
    ).update(history_change_reason=INTAKE_BY_PATIENT)

    # The patient's row just before this one; none when the history began later than the patient.
    earlier = HistoricalPatient.objects.filter(id=OuterRef("id")).filter(
        Q(history_date__lt=OuterRef("history_date"))
        | Q(history_date=OuterRef("history_date"), history_id__lt=OuterRef("history_id"))
    ).order_by("-history_date", "-history_id")
    (
        HistoricalPatient.objects.filter(NO_ONE_AND_NO_REASON, history_type="~", opted_out_at__isnull=False)
        .alias(had_earlier=Exists(earlier), earlier_opted_out_at=Subquery(earlier.values("opted_out_at")[:1]))
        .filter(had_earlier=True, earlier_opted_out_at__isnull=True)
        .update(history_change_reason=UNSUBSCRIBED_BY_PATIENT)
    )


class Migration(migrations.Migration):

    dependencies = [
        ('patients', '0014_reminder_visit_moved'),
    ]

    operations = [
        # Backwards leaves the reasons: rows saved since the services gave them carry the same words, so
        # which ones this filled in cannot be told apart, and the reasons are true either way.
        migrations.RunPython(name_the_patient, migrations.RunPython.noop),
    ]
