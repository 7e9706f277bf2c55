"""`python -m sandbox.ews`: run the EWS sandbox in the foreground."""

import argparse
import os
from pathlib import Path

from . import demo
from .server import EwsServer

VAR_DIR = Path(os.environ.get("MSS_VAR_DIR", Path(__file__).resolve().parents[2] / "var"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox.ews", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8012)
    parser.add_argument(
        "--ca-file",
        default=os.environ.get("EWS_CA_BUNDLE") or str(VAR_DIR / "sandbox" / "ews-ca.pem"),
        help="where to write the test CA's PEM (the product's EWS_CA_BUNDLE)",
    )
    parser.add_argument("--no-demo", action="store_true", help="start without Demo Kommun")
    parser.add_argument(
        "--bench-mailboxes",
        type=int,
        default=0,
        help="also this many mailboxes bench-NNNN@bench.example.se, each a realistic fortnight",
    )
    args = parser.parse_args(argv)
    server = EwsServer(args.host, args.port, ca_file=args.ca_file, with_demo=not args.no_demo)
    demo.load_bench(server.sandbox, args.bench_mailboxes)
    server.run_in_foreground("EWS sandbox")


if __name__ == "__main__":
    main()
