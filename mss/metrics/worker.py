"""A Celery worker's side of the metrics: counted across its prefork pool (multiprocess
mode), and served on MSS_WORKER_METRICS_PORT by its main process when that is set (for
machines that run no web server). The database's state is left to the web's /metrics."""

import logging
import os

from celery.signals import worker_init, worker_process_shutdown
from django.conf import settings

from . import mark_process_dead, serve

logger = logging.getLogger(__name__)


def _process_ended(pid=None, exitcode=None, **kwargs):
    mark_process_dead(pid or os.getpid())


def _serve_metrics(**kwargs):
    port = settings.MSS_WORKER_METRICS_PORT
    if port:
        serve(port, settings.MSS_WORKER_METRICS_ADDR)
        logger.info("Worker metrics served on %s:%d", settings.MSS_WORKER_METRICS_ADDR, port)


def connect() -> None:
    """Hook the worker's signals (mss/celery.py calls this once)."""
    worker_process_shutdown.connect(_process_ended, weak=False, dispatch_uid="mss_metrics_dead")
    worker_init.connect(_serve_metrics, weak=False, dispatch_uid="mss_metrics_serve")
