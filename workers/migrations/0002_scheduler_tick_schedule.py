"""The periodic scheduler tick: once a minute, on whichever qcluster node takes it."""
from django.db import migrations


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="hpo-scheduler-tick",
        defaults={"func": "workers.tasks.scheduler_tick", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="hpo-scheduler-tick").delete()


class Migration(migrations.Migration):
    dependencies = [("workers", "0001_initial"), ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more")]
    operations = [migrations.RunPython(create_schedule, delete_schedule)]
