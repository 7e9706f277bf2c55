#!/usr/bin/env bash
# One deploy's database, on ONE machine, before the services (re)start: the schema and the
# beat schedules (django-celery-beat's tables), then Django's deployment checks. Idempotent.
# deploy/systemd/mss-release.service runs it; so can a deploy tool. (Static files are each web
# machine's own: mss-web.service collects them before it starts.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${MSS_PYTHON:-.venv/bin/python}"
"$PY" manage.py migrate --noinput
"$PY" manage.py install_schedules
"$PY" manage.py check --deploy --fail-level WARNING
