"""`python -m sandbox.m365`: run the Microsoft 365 sandbox in the foreground."""

import argparse
import os
from pathlib import Path

from . import demo, signin
from .server import DEFAULT_APP_NAME, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, M365Server

VAR_DIR = Path(os.environ.get("MSS_VAR_DIR", Path(__file__).resolve().parents[2] / "var"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox.m365", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--state", help="JSON file keeping consent, subscriptions and events")
    parser.add_argument(
        "--ca-file",
        default=os.environ.get("MS_CA_BUNDLE") or str(VAR_DIR / "sandbox" / "m365-ca.pem"),
        help="where to write the test CA's PEM (the product's MS_CA_BUNDLE)",
    )
    parser.add_argument("--client-id", default=os.environ.get("MS_CLIENT_ID", DEFAULT_CLIENT_ID))
    parser.add_argument(
        "--client-secret", default=os.environ.get("MS_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    )
    parser.add_argument(
        "--addin-id",
        default=os.environ.get("MS_ADDIN_ID", demo.DEFAULT_ADDIN_ID),
        help="the Outlook add-in id whose choice one demo booking carries (the product's)",
    )
    parser.add_argument(
        "--app-name",
        default=os.environ.get("MS_APP_DISPLAY_NAME", DEFAULT_APP_NAME),
        help="the app's name on the consent page (the product's MS_APP_DISPLAY_NAME)",
    )
    parser.add_argument("--no-demo", action="store_true", help="start without Demo AB's tenant")
    parser.add_argument(
        "--allow-http-loopback",
        action="store_true",
        help="accept http://127.0.0.1 notification URLs (Graph takes https only). `make run` "
        "alone uses it: its runserver has no TLS. Nothing else should",
    )
    parser.add_argument(
        "--trust-ca",
        action="append",
        default=[],
        help="a CA file to trust for deliveries besides the system's and the sandbox's own "
        "(repeatable): what issued the product's https certificate",
    )
    parser.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        help="register another redirect URI for sign-in (repeatable); PUBLIC_BASE_URL's "
        "callbacks are registered too",
    )
    args = parser.parse_args(argv)
    redirect_uris = list(args.redirect_uri)
    if os.environ.get("PUBLIC_BASE_URL"):
        redirect_uris += signin.redirect_uris_for(os.environ["PUBLIC_BASE_URL"])
    server = M365Server(
        args.host,
        args.port,
        ca_file=args.ca_file,
        state_file=args.state,
        client_id=args.client_id,
        client_secret=args.client_secret,
        with_demo=not args.no_demo,
        addin_id=args.addin_id,
        redirect_uris=redirect_uris,
        app_name=args.app_name,
        allow_http_loopback=args.allow_http_loopback,
        trust_ca_files=args.trust_ca,
    )
    server.run_in_foreground("M365 sandbox")


if __name__ == "__main__":
    main()
