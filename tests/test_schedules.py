from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from mss.celery import app
from mss.schedules import PERIODIC_TASKS


def test_it_installs_every_schedule_once(db):
    call_command("install_schedules")
    call_command("install_schedules")
    assert PeriodicTask.objects.filter(name__in=PERIODIC_TASKS).count() == len(PERIODIC_TASKS)


def test_it_leaves_an_ops_edit_alone(db):
    call_command("install_schedules")
    task = PeriodicTask.objects.get(name=next(iter(PERIODIC_TASKS)))
    task.enabled = False
    task.save()
    call_command("install_schedules")
    task.refresh_from_db()
    assert task.enabled is False


def test_every_scheduled_task_exists():
    app.loader.import_default_modules()
    for spec in PERIODIC_TASKS.values():
        assert spec["task"] in app.tasks, spec["task"]


def test_celery_speaks_json_only(settings):
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json"
    assert app.conf.task_time_limit == settings.CELERY_TASK_TIME_LIMIT
