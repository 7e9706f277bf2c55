"""`python -m sandbox.wait URL [URL …] [--timeout 20]`: wait until every URL answers 2xx.

`make run` uses it to start the product only once its sandboxes are listening.
"""

import argparse
import ssl
import sys
import time
import urllib.error
import urllib.request


def answers(url):
    context = ssl._create_unverified_context()  # a sandbox's test CA is not ours to check here
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox.wait", description=__doc__)
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    waiting = list(args.urls)
    while waiting and time.monotonic() < deadline:
        waiting = [url for url in waiting if not answers(url)]
        if waiting:
            time.sleep(0.2)
    if waiting:
        print(f"Not answering after {args.timeout:.0f}s: {', '.join(waiting)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
