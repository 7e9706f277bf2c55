import os

from celery import Celery

from . import kombu_restore

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mss.settings")

# kombu 5.7.0 (the newest release) can kill the worker while it restores unacknowledged
# messages after a Redis restart; see mss/kombu_restore.py.
kombu_restore.install()

app = Celery("mss")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
