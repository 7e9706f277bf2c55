from celery.schedules import crontab
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import Q
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from mss.schedules import PERIODIC_TASKS, RETIRED_ENTRIES, RETIRED_TASKS


def _schedule_kwargs(schedule):
    model, key = (
        (CrontabSchedule, "crontab")
        if isinstance(schedule, crontab)
        else (IntervalSchedule, "interval")
    )
    row = model.from_schedule(schedule)
    if row.pk is None:
        row.save()
    return {key: row}


class Command(BaseCommand):
    help = "Install the periodic tasks of mss/schedules.py into django-celery-beat (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        retired, _ = PeriodicTask.objects.filter(
            Q(task__in=RETIRED_TASKS) | Q(name__in=RETIRED_ENTRIES)
        ).delete()
        if retired:
            self.stdout.write(f"Removed {retired} entries of tasks that no longer exist")
        for name, spec in PERIODIC_TASKS.items():
            _, created = PeriodicTask.objects.get_or_create(
                name=name, defaults={"task": spec["task"], **_schedule_kwargs(spec["schedule"])}
            )
            state = "installed" if created else "already present (left as ops set it)"
            self.stdout.write(f"{name}: {state}")
