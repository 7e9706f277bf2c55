"""The fault matrix's harness (`pytest -m faults`): a whole stack per scenario (stack.py).

Each scenario gets its own PostgreSQL database (cloned from a template migrated once per
session), its own Redis, gunicorn, Celery worker(s) and beat on free ports, and in-process
sandboxes; everything is stopped and dropped when the scenario ends, also when it failed. The
processes' logs are kept in test-artifacts/faults/<n>-<name>/. The FAULT lines every scenario
prints are repeated at the end of the run.
"""

import signal

import pytest

from . import stack as stack_module
from .database import create_template, drop_template


@pytest.fixture(scope="session")
def fault_template():
    create_template()
    yield
    drop_template()


@pytest.fixture
def fault_stack(request, fault_template, settings, m365, onex_sandbox, m365_ca):
    """`fault_stack(number, name, **start_options)` → a started Stack; `ews_mailboxes=N`
    brings the EWS sandbox in too."""
    blocker = request.getfixturevalue("django_db_blocker")
    made = []

    def make(number, name, **options):
        ews = on_prem = None
        if options.get("ews_mailboxes"):
            ews, on_prem = request.getfixturevalue("ews"), request.getfixturevalue("on_prem")
        stack = stack_module.Stack(
            number,
            name,
            settings_fixture=settings,
            m365=m365,
            onex=onex_sandbox,
            m365_ca=m365_ca,
            ews=ews,
        )
        made.append(stack)
        return stack.start(on_prem=on_prem, **options)

    # A CI timeout's SIGTERM unwinds like Ctrl-C, so the teardown still stops every process.
    saved = signal.signal(signal.SIGTERM, _interrupt)
    with blocker.unblock():
        try:
            yield make
        finally:
            for stack in made:
                stack.close()
            signal.signal(signal.SIGTERM, saved)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_terminal_summary(terminalreporter):
    if stack_module.REPORTS:
        terminalreporter.section("fault matrix")
        for _number, line in sorted(stack_module.REPORTS):
            terminalreporter.write_line(line)
