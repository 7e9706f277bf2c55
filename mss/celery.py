import os

from celery import Celery

from . import kombu_restore
from .metrics import worker as metrics_worker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mss.settings")

# kombu 5.7.0 (the newest release) can kill the worker while it restores unacknowledged
# messages after a Redis restart; see mss/kombu_restore.py.
kombu_restore.install()

app = Celery("mss")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Counted across the prefork pool; served on MSS_WORKER_METRICS_PORT when set.
metrics_worker.connect()

# A person's change (a notification, an add-in choice) runs on a queue of its own, so a bulk
# resync queued ahead never delays it; production runs a worker that consumes only it.
INTERACTIVE_TASKS = frozenset({"calendarsync.tasks.sync_mailbox"})


def interactive_queue(default_queue: str) -> str:
    """The interactive queue beside `default_queue` (a benchmark's or test's own queue gets its
    own interactive twin, so workers sharing a broker stay apart)."""
    return "interactive" if default_queue == "celery" else f"{default_queue}.interactive"


def worker_queues(default_queue: str) -> str:
    """`-Q` for a worker that consumes both queues (make run, the fault harness)."""
    return f"{default_queue},{interactive_queue(default_queue)}"


def route_task(name, args, kwargs, options, task=None, **kw):
    """CELERY_TASK_ROUTES: read at each send, so a queue set at run time is followed."""
    if name in INTERACTIVE_TASKS:
        return {"queue": interactive_queue(app.conf.task_default_queue)}
    return None
