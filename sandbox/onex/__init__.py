"""A One X API sandbox: the contract of onex-api.md, a directory page, and fault knobs.

Run `python -m sandbox.onex [--port 8010] [--state FILE]`; tests use `OneXSandbox(...).start()`.
"""

from .faults import Knobs
from .server import OneXSandbox

__all__ = ["Knobs", "OneXSandbox"]
