"""The HTTPS plumbing the Microsoft 365 and Telenor ID sandboxes share.

`TLSServer` is a threading HTTP server behind a certificate from a trustme test CA (made at
start, or shared by tests: making keys is the slow part), which it writes to `ca_file` for the
product to trust. `TLSHandler` does each connection's TLS handshake in that connection's thread.
"""

import signal
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme


class TLSHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections close

    def setup(self):
        # The TLS handshake runs in the connection's own thread, not in the accept loop.
        self.request.settimeout(self.timeout)
        # Headers and body go out in two writes: without NODELAY each response waits ~40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.do_handshake()
        super().setup()

    def handle(self):
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError, TimeoutError):
            self.close_connection = True

    def log_message(self, format, *args):  # noqa: A002 - each sandbox keeps its request log
        pass


class TLSServer:
    """`handler` served over HTTPS on host:port (0 = a free port); `start()` runs it in a
    background thread."""

    def __init__(self, handler, host, port, *, ca=None, ca_file=None, ca_name="MSS sandbox CA"):
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.ca = ca or trustme.CA(organization_name=ca_name)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost", "::1").configure_cert(context)
        self.httpd.socket = context.wrap_socket(
            self.httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port = self.httpd.server_address[1]
        self.base_url = f"https://{host}:{self.port}"
        self.ca_file = Path(ca_file) if ca_file else None
        if self.ca_file:
            self.ca_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.ca_file.with_suffix(".tmp")
            self.ca.cert_pem.write_to_path(str(tmp))
            tmp.replace(self.ca_file)
        self.thread: threading.Thread | None = None

    def start(self):
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def run_in_foreground(self, banner: str):
        """`python -m sandbox.…`: serve until Ctrl-C or SIGTERM (how `make run` stops us)."""
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print(f"{banner} on {self.base_url} (CA: {self.ca_file})", flush=True)
        try:
            self.httpd.serve_forever()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.httpd.server_close()
