"""gunicorn's configuration for MSS Kalenderkoppling (deploy/systemd/mss-web.service).

Behind a TLS-terminating proxy that sets X-Forwarded-Proto (mss/settings.py trusts it in
production). Every value can be set from the environment file.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Requests wait on Microsoft and One X at times (Testa anslutningen): threads, not more processes.
workers = int(os.environ.get("GUNICORN_WORKERS", min(4, multiprocessing.cpu_count() * 2)))
threads = int(os.environ.get("GUNICORN_THREADS", 4))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 60))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", 20))
keepalive = 5
# The proxy's address: X-Forwarded-* from anyone else is ignored.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
# A worker's heartbeat file in memory, not on a disk that may stall.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Access lines to stdout (journald); the application's JSON lines go to stderr.
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
# The path without its query (which can hold an address or a sign-in code), and the request id
# that joins the line to the application's own lines.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms %({x-request-id}o)s'
errorlog = "-"
# Without the app loaded in the master, each worker opens its own connections after the fork.
preload_app = False


def child_exit(server, worker):
    """A gone worker's live metrics files are merged away (prometheus-client multiprocess)."""
    from mss.metrics import mark_process_dead

    mark_process_dead(worker.pid)
