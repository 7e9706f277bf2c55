"""An https front for an http server: a TLS-terminating reverse proxy, as production has.

Graph delivers change notifications to https URLs only. Django's live_server speaks http, so
tests put this proxy before it: https://127.0.0.1:<port> with a certificate from the Microsoft
365 sandbox's test CA (which the sandbox trusts, as Graph trusts the public CAs), forwarding each
request to the origin with `X-Forwarded-Proto: https` — the header production's TLS terminator
sets and mss/settings.py's SECURE_PROXY_SSL_HEADER reads. Bodies are read whole and relayed
whole (the product's answers are small; a streamed CSV arrives in full).
"""

import http.client
from urllib.parse import urlsplit

from sandbox.tls import TLSHandler, TLSServer

# Hop-by-hop headers (RFC 9110 §7.6.1) end at the proxy; the length is recomputed.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


class ProxyHandler(TLSHandler):
    origin: tuple[str, int]  # set on the subclass the front makes

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-Proto"] = "https"
        headers["X-Forwarded-For"] = self.client_address[0]
        connection = http.client.HTTPConnection(*self.origin, timeout=60)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():  # a list: several Set-Cookie headers stay
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
        except OSError as exc:
            payload = f"https front: the origin did not answer: {exc}".encode()
            self.send_response(502)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        finally:
            connection.close()
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward


class HttpsFront:
    """https://127.0.0.1:<free port> in front of `origin_url` (http), certified by `ca`."""

    def __init__(self, origin_url: str, ca):
        split = urlsplit(origin_url)
        handler = type("BoundProxy", (ProxyHandler,), {"origin": (split.hostname, split.port)})
        self.server = TLSServer(handler, "127.0.0.1", 0, ca=ca).start()
        self.url = self.server.base_url

    def stop(self):
        self.server.stop()
