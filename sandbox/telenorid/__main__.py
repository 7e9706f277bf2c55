"""`python -m sandbox.telenorid`: run the Telenor ID sandbox in the foreground."""

import argparse
import os
from pathlib import Path

from .server import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_POST_LOGOUT_URI,
    DEFAULT_REDIRECT_URI,
    TelenorIdServer,
)

VAR_DIR = Path(os.environ.get("MSS_VAR_DIR", Path(__file__).resolve().parents[2] / "var"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox.telenorid", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8013)
    parser.add_argument(
        "--ca-file",
        default=os.environ.get("TELENOR_ID_CA_BUNDLE")
        or str(VAR_DIR / "sandbox" / "telenorid-ca.pem"),
        help="where to write the test CA's PEM (the product's TELENOR_ID_CA_BUNDLE)",
    )
    parser.add_argument(
        "--client-id", default=os.environ.get("TELENOR_ID_CLIENT_ID", DEFAULT_CLIENT_ID)
    )
    parser.add_argument(
        "--client-secret",
        default=os.environ.get("TELENOR_ID_CLIENT_SECRET", DEFAULT_CLIENT_SECRET),
    )
    parser.add_argument(
        "--redirect-uri",
        action="append",
        dest="redirect_uris",
        help=f"a registered redirect URI (repeatable; default {DEFAULT_REDIRECT_URI})",
    )
    parser.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        dest="post_logout_redirect_uris",
        help=f"a registered post-logout URI (repeatable; default {DEFAULT_POST_LOGOUT_URI})",
    )
    parser.add_argument("--no-demo", action="store_true", help="start without Demo AB's people")
    args = parser.parse_args(argv)
    server = TelenorIdServer(
        args.host,
        args.port,
        ca_file=args.ca_file,
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_uris=args.redirect_uris or (DEFAULT_REDIRECT_URI,),
        post_logout_redirect_uris=args.post_logout_redirect_uris or (DEFAULT_POST_LOGOUT_URI,),
        with_demo=not args.no_demo,
    )
    server.run_in_foreground("Telenor ID sandbox")


if __name__ == "__main__":
    main()
