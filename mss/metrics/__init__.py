"""Prometheus metrics: which registry holds them, and the multiprocess bookkeeping.

Without PROMETHEUS_MULTIPROC_DIR (development, tests) each process keeps its metrics in
prometheus_client's default registry. With it (gunicorn's workers, Celery's prefork pool),
prometheus_client writes every process's counters and histograms to files in that directory
and a scrape adds them up (its documented multiprocess mode). The directory must be emptied
before the service starts, and be one per service (web, worker).

Imports nothing of Django: gunicorn's master calls `mark_process_dead` from its child_exit hook.
"""

import os

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str:
    return os.environ.get(MULTIPROC_ENV, "")


def process_registry() -> CollectorRegistry:
    """The counters and histograms of every process of this service (multiprocess mode), or
    of this process."""
    if not multiprocess_dir():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def mark_process_dead(pid: int) -> None:
    """A worker process ended (gunicorn's child_exit, Celery's worker_process_shutdown): its
    live gauges go; its counters stay counted."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)


def serve(port: int, addr: str = "0.0.0.0"):
    """Serve `process_registry()` over HTTP on `port` in a thread (a Celery worker's main
    process, MSS_WORKER_METRICS_PORT). Returns the server and its thread."""
    return start_http_server(port, addr=addr, registry=process_registry())
