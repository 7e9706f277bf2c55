"""Benchmarks (`pytest -m bench -s`): they print figures and assert no timings. The end-to-end
one runs on the fault matrix's stack (tests/faults)."""

from tests.faults.conftest import fault_stack, fault_template  # noqa: F401 - fixtures
