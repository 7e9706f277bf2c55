# MSS Kalenderkoppling. `make run` = the product with demo data; `make test` = lint + tests.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)

.PHONY: run setup test test-faults test-deps lint messages clean prod-smoke

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)
	$(PY) manage.py migrate --noinput -v0
	@if command -v msgfmt >/dev/null; then $(PY) manage.py compilemessages -v0; \
	  else echo "msgfmt not found: using the committed .mo files"; fi
	$(PY) manage.py install_schedules
	$(PY) manage.py demo_setup

# The sandboxes, web, Celery worker and beat in one foreground command. Ctrl-C stops all:
# SIGTERM to each service (not to the group: a worker stops its own pool, which logged errors
# when signalled behind its back), then SIGKILL to the group for what still runs after 9 s (a
# worker's warm shutdown on the file broker takes 6–8 s: its polling loop).
# tests/smoke/test_make_run_stops.py presses Ctrl-C and checks this. The M365 sandbox rebuilds the demo
# bookings going on "now" at each start, without change notifications: one reconcile of every
# mailbox is queued, so a restart shows them at once instead of at the hourly reconcile.
# No Outlook runs here: the task pane loads the M365 sandbox's Office.js stand-in instead of
# Microsoft's CDN script, and the sandbox's demo page plays Outlook around it.
# The demo's one concession to Graph: runserver has no TLS, so the M365 sandbox is told
# (--allow-http-loopback) to deliver change notifications to http://127.0.0.1:8000. Tests and
# benchmarks deliver over https, as Graph does.
run: export OFFICE_JS_URL ?= https://127.0.0.1:8011/_sandbox/addin/office.js
run: setup
	@trap 'trap "" INT TERM; trap - EXIT; kill -TERM $$(jobs -pr) 2>/dev/null; \
	       for _ in $$(seq 18); do [ -z "$$(jobs -pr)" ] && exit 0; sleep 0.5; done; \
	       echo "Stopping what did not stop in 9 s"; kill -KILL 0' INT TERM EXIT; \
	$(PY) -m sandbox.onex --port 8010 & \
	$(PY) -m sandbox.m365 --port 8011 --state $${MSS_VAR_DIR:-var}/sandbox/m365.json \
	  --allow-http-loopback & \
	$(PY) -m sandbox.ews --port 8012 & \
	$(PY) -m sandbox.telenorid --port 8013 & \
	$(PY) -m sandbox.wait http://127.0.0.1:8010/_sandbox/health https://127.0.0.1:8011/_sandbox/health \
	  https://127.0.0.1:8012/_sandbox/health https://127.0.0.1:8013/_sandbox/health || exit 1; \
	$(PY) manage.py import_directory || echo "One X directory import failed (see above)"; \
	$(PY) manage.py demo_connect_graph || echo "Exchange Online demo connection failed (see above)"; \
	$(PY) manage.py demo_connect_ews || echo "Exchange On Prem demo connection failed (see above)"; \
	echo "Outlook add-in: manifest http://127.0.0.1:8000/addin/manifest.xml," \
	  "demo https://127.0.0.1:8011/_sandbox/addin/demo (the sandbox's Outlook stand-in)"; \
	$(VENV)/bin/celery -A mss call calendarsync.tasks.reconcile_all_mailboxes \
	  --kwargs '{"everyone": true}' >/dev/null \
	  || echo "Could not queue the start's reconcile (see above)"; \
	$(VENV)/bin/celery -A mss worker -l info --concurrency 2 -Q celery -n bulk@%h --without-gossip --without-mingle & \
	$(VENV)/bin/celery -A mss worker -l info --concurrency 1 -Q interactive -n interactive@%h --without-gossip --without-mingle & \
	$(VENV)/bin/celery -A mss beat -l info & \
	$(PY) manage.py runserver 127.0.0.1:8000 --noreload & \
	wait -n

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# What the tests need outside .venv: Debian's chromium at /usr/bin/chromium, which the browser
# tests (tests/test_browser.py) drive through Playwright. Installed when missing and we are root;
# otherwise make stops here and says what to install. No test needs gettext's msgfmt: they read
# the committed .mo file. axe-core (npm, pinned) is what tests/test_browser_a11y.py measures
# the pages with; it goes into .venv/axe, beside the other test tools, when missing.
CHROMIUM := /usr/bin/chromium
AXE_VERSION := 4.14.1
AXE_DIR := $(VENV)/axe

test-deps:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "$(CHROMIUM) not found: installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	      || { echo "Installing chromium failed (see above)." >&2; exit 1; }; \
	  else \
	    echo "The browser tests need Debian's chromium at $(CHROMIUM). Install it first:" >&2; \
	    echo "  sudo apt-get install chromium    (as root: apt-get install chromium)" >&2; \
	    exit 1; \
	  fi; \
	  test -x $(CHROMIUM) || { echo "No $(CHROMIUM) after the install." >&2; exit 1; }; \
	fi
	@if ! grep -qs '"version": "$(AXE_VERSION)"' $(AXE_DIR)/node_modules/axe-core/package.json; then \
	  command -v npm >/dev/null || { echo "The accessibility tests need npm (Node.js) to install axe-core." >&2; exit 1; }; \
	  echo "Installing axe-core $(AXE_VERSION) into $(AXE_DIR) for the accessibility tests"; \
	  npm install --no-save --no-audit --no-fund --prefix $(AXE_DIR) axe-core@$(AXE_VERSION) \
	    || { echo "Installing axe-core failed (see above)." >&2; exit 1; }; \
	fi

test: test-deps lint
	$(VENV)/bin/pytest

# The fault matrix (tests/faults): real processes, about 20 minutes; CI runs it after `test`.
test-faults: $(STAMP)
	$(VENV)/bin/pytest -m faults

messages: $(STAMP)
	$(PY) manage.py makemessages -l sv --no-obsolete --ignore=.venv --ignore=var --ignore=sandbox --ignore=tests
	$(PY) manage.py compilemessages

clean:
	rm -rf var

# The production recipe (deploy/) started here on PostgreSQL and Redis, and `make run`'s
# Ctrl-C (tests/smoke): about 3 minutes. CI runs it after `test`.
prod-smoke: $(STAMP)
	$(VENV)/bin/pytest -m smoke -s -p no:cacheprovider tests/smoke
