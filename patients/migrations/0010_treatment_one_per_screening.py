from django.conf import settings
from django.db import migrations, models


def refuse_screenings_used_twice(apps, schema_editor):
    """Name the duplicates instead of failing on the index: which one to cancel is the clinic's call."""
    Treatment = apps.get_model("patients", "Treatment")
    used_twice = (
        Treatment.objects.exclude(status="cancelled").values("screening_id")
        .annotate(count=models.Count("id")).filter(count__gt=1).values_list("screening_id", flat=True)
    )
    duplicates = {
        screening_id: list(
            Treatment.objects.filter(screening_id=screening_id).exclude(status="cancelled").values_list("id", flat=True)
        )
        for screening_id in used_twice
    }
    if duplicates:
        listed = "; ".join(f"screening {screening}: treatments {ids}" for screening, ids in duplicates.items())
        raise RuntimeError(
            "Some screenings were used for more than one treatment (a double submission). Cancel the duplicate "
            f"treatment of each in the admin, then migrate again. {listed}"
        )


class Migration(migrations.Migration):

    dependencies = [
        ('clinic', '0001_initial'),
        ('patients', '0009_treatment_needle_depth_and_passes'),
        ('protocols', '0004_certificate_validators'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(refuse_screenings_used_twice, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='treatment',
            constraint=models.UniqueConstraint(condition=models.Q(('status', 'cancelled'), _negated=True), fields=('screening',), name='treatment_one_per_screening', violation_error_message='This screening was already used for another treatment.'),
        ),
    ]
