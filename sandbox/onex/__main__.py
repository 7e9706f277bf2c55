"""`python -m sandbox.onex [--host 127.0.0.1] [--port 8010] [--state var/sandbox/onex.json]`"""

import argparse
import os
import signal
import sys
from pathlib import Path

from .server import OneXSandbox

DEFAULT_STATE = Path(os.environ.get("MSS_VAR_DIR", "var")) / "sandbox" / "onex.json"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox.onex", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument("--state", default=str(DEFAULT_STATE), help="JSON file that keeps state")
    args = parser.parse_args(argv)
    sandbox = OneXSandbox(args.host, args.port, state_path=args.state)
    # SIGTERM (make run's Ctrl-C trap, a test's terminate()) stops cleanly and writes the state.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"One X sandbox on {sandbox.url} (state {args.state})", flush=True)
    try:
        sandbox.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.store.close()


if __name__ == "__main__":
    main()
