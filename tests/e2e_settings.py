"""Settings for the Celery worker an end-to-end test starts: the product's settings plus a
queue of the test's own, so the worker neither takes nor leaves tasks of anyone else using the
same Redis (tasks the worker enqueues itself go to that queue too)."""

import os

from mss.settings import *  # noqa: F403

CELERY_TASK_DEFAULT_QUEUE = os.environ["MSS_E2E_QUEUE"]
