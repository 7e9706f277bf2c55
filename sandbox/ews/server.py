"""An Exchange Server (on-premises) stand-in speaking EWS over HTTPS, for exchangelib.

`POST /EWS/Exchange.asmx` takes SOAP 1.1 behind NTLM (or Basic) authentication, checks the
RequestServerVersion and ExchangeImpersonation headers, and runs the operation (operations.py).
`GET /autodiscover/metadata/json/1` is Exchange's auth metadata document, anonymous (addin.py).
Sandbox-only JSON endpoints under /_sandbox/ turn knobs, change calendars as if in Outlook
(firing push notifications), and show the request log, subscriptions and deliveries; those under
/_sandbox/addin/ (identity tokens, custom properties) are what Office.js does in the add-in's
task pane, and answer cross-origin.
"""

import base64
import json
import time
from urllib.parse import parse_qs, unquote, urlsplit

from lxml import etree

from .. import cors
from ..tls import TLSHandler, TLSServer
from .addin import METADATA_PATH
from .auth import DEFAULT_PASSWORD, DEFAULT_USERNAME, SpnegoError
from .knobs import BUILDS
from .operations import MAILBOX_OPERATIONS, OPERATIONS, OperationError
from .sandbox import EwsSandbox
from .xml import NSMAP, SOAP, envelope, fault, find, response, response_message, server_version_info

__all__ = ["DEFAULT_PASSWORD", "DEFAULT_USERNAME", "EWS_PATH", "EwsServer"]

EWS_PATH = "/EWS/Exchange.asmx"
API_VERSIONS = (  # oldest to newest, as RequestServerVersion spells them
    "Exchange2007", "Exchange2007_SP1", "Exchange2009", "Exchange2010", "Exchange2010_SP1",
    "Exchange2010_SP2", "Exchange2012", "Exchange2013", "Exchange2013_SP1", "Exchange2015",
    "Exchange2016", "V2015_10_05", "V2016_01_06", "V2016_04_13", "V2016_07_13", "V2016_10_10",
)  # fmt: skip
XML = "text/xml; charset=utf-8"


def accepted_version(requested: str | None, build: str) -> bool:
    """Whether a server of this build takes the RequestServerVersion asked for."""
    if requested is None:
        return True
    if requested not in API_VERSIONS:
        return False
    newest = BUILDS[build][2]
    return API_VERSIONS.index(requested) <= API_VERSIONS.index(newest) or (
        newest == "Exchange2016" and requested.startswith("V2016")
    )


class Handler(TLSHandler):
    server_version = "Microsoft-IIS/10.0"
    sandbox: EwsSandbox  # set on the subclass the server makes

    def setup(self):
        super().setup()
        self.connection_state = {}  # NTLM context and the authenticated user, per connection

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_OPTIONS(self):
        # Only the add-in endpoints answer a CORS preflight; nothing else is cross-origin.
        if cors.is_addin_path(urlsplit(self.path).path):
            return self._dispatch()
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        return self._send(405, b"", {"Allow": "GET, POST"})

    # ----- plumbing

    def _dispatch(self):
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        self.raw = self.rfile.read(length) if length else b""
        try:
            if cors.is_addin_path(split.path):
                return self._addin(split.path[len(cors.ADDIN_PREFIX) :].strip("/"))
            if split.path.startswith("/_sandbox/"):
                return self._control(split.path[len("/_sandbox/") :].strip("/"))
            if split.path.lower() == EWS_PATH.lower():
                return self._ews()
            if split.path.lower() == METADATA_PATH:
                return self._metadata()
            return self._send(404, b"Not Found", content_type="text/plain")
        except BrokenPipeError:
            return None

    def _send(self, status, payload=b"", headers=None, content_type=XML):
        if not isinstance(payload, bytes):
            payload = json.dumps(payload, default=str).encode()
            content_type = "application/json"
        self.send_response(status)
        for key, value in (headers or {}).items():
            for item in value if isinstance(value, list) else [value]:
                self.send_header(key, item)
        if payload:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    # ----- EWS

    def _ews(self):
        sandbox = self.sandbox
        knobs = sandbox.knobs
        entry = {"method": self.command, "path": EWS_PATH}
        if knobs.outage == "close":
            self.close_connection = True
            return None
        if knobs.outage == "503":
            entry["status"] = 503
            sandbox.record(entry)
            return self._send(503, b"Service Unavailable", content_type="text/plain")
        user = self._authenticate(entry)
        if user is None:
            return None
        entry["user"] = user
        if self.command != "POST":
            return self._send(405, b"", {"Allow": "POST"})
        if knobs.latency_ms:
            time.sleep(knobs.latency_ms / 1000)
        status, body, version = self._soap(entry)
        payload = envelope(body, version)
        entry["status"] = status
        sandbox.record(entry)
        sandbox.observe("response", payload)
        return self._send(status, payload)

    # ----- the auth metadata document (anonymous: IIS serves /autodiscover/metadata without
    # Windows authentication, whatever EWS asks for)

    def _metadata(self):
        sandbox = self.sandbox
        scheme = self.headers.get("Authorization", "").partition(" ")[0]
        entry = {"method": self.command, "path": METADATA_PATH, "auth": scheme.lower() or None}
        if sandbox.knobs.outage == "close":
            self.close_connection = True
            return None
        if sandbox.knobs.outage == "503":
            entry["status"] = 503
            sandbox.record(entry)
            return self._send(503, b"Service Unavailable", content_type="text/plain")
        if self.command != "GET":
            entry["status"] = 405
            sandbox.record(entry)
            return self._send(405, b"", {"Allow": "GET"})
        entry["status"] = 200
        sandbox.record(entry)
        document = json.dumps(sandbox.identity.metadata(sandbox.base_url)).encode()
        return self._send(200, document, content_type="application/json; charset=utf-8")

    def _challenge(self, entry, token=None, failed=False):
        headers = {}
        if self.sandbox.knobs.auth == "ntlm":
            headers["WWW-Authenticate"] = f"NTLM {token}" if token else ["Negotiate", "NTLM"]
        else:
            headers["WWW-Authenticate"] = 'Basic realm="mail.demokommun.se"'
        if failed:
            entry["status"] = 401
            entry["error"] = "wrong credentials"
            self.sandbox.record(entry)
        return self._send(401, b"", headers, "text/html")

    def _authenticate(self, entry) -> str | None:
        """The authenticated user, or None once a 401 has been answered."""
        accounts = self.sandbox.accounts
        mode = self.sandbox.knobs.auth
        state = self.connection_state
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        entry["auth"] = scheme.lower() or None
        if not header:
            if (
                mode == "ntlm"
                and state.get("user")
                and state.get("generation") == accounts.generation
            ):
                entry["auth"] = "ntlm (connection)"
                return state["user"]
            return self._challenge(entry)
        if mode == "basic":
            if scheme.lower() != "basic":
                return self._challenge(entry)
            user = accounts.check_basic(header)
            return user if user else self._challenge(entry, failed=True)
        if scheme.lower() not in ("ntlm", "negotiate"):
            return self._challenge(entry)
        try:
            token = base64.b64decode(value.strip())
            answer, user = accounts.ntlm_step(state, token)
        except (ValueError, SpnegoError):
            state.clear()
            return self._challenge(entry, failed=True)
        if user is None:
            return self._challenge(entry, base64.b64encode(answer).decode())
        if not accounts.same_user(user):
            return self._challenge(entry, failed=True)
        state.update(user=accounts.username, generation=accounts.generation)
        return accounts.username

    def _soap(self, entry):
        sandbox = self.sandbox
        build = sandbox.knobs.build
        numbers, version_name, _ = BUILDS[build]
        version = server_version_info(numbers, version_name)
        try:
            root = etree.fromstring(self.raw)
        except etree.XMLSyntaxError as problem:
            entry["response_code"] = "ErrorSchemaValidation"
            return 500, fault("ErrorSchemaValidation", f"The request is not XML: {problem}"), None
        header = root.find(f"{{{SOAP}}}Header")
        body = root.find(f"{{{SOAP}}}Body")
        request = body[0] if body is not None and len(body) else None
        operation = etree.QName(request).localname if request is not None else None
        requested = None
        asked = find(header, "t:RequestServerVersion")
        if asked is not None:
            requested = asked.get("Version")
        entry.update(operation=operation, api_version=requested)
        impersonated = None
        for path in ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName"):
            if impersonated is None:  # (an lxml element without children is falsy)
                impersonated = find(header, f"t:ExchangeImpersonation/t:ConnectingSID/t:{path}")
        mailbox = impersonated.text.strip().lower() if impersonated is not None else None
        entry["mailbox"] = mailbox

        def failure(code, message, values=None):
            entry["response_code"] = code
            return 500, fault(code, message, values), version

        if not accepted_version(requested, build):
            return failure(
                "ErrorInvalidServerVersion",
                "The specified server version is invalid.",
            )
        if operation not in OPERATIONS:
            return failure("ErrorInvalidRequest", "The request is invalid.")
        back_off = sandbox.take_busy()
        if back_off is not None:
            return failure(
                "ErrorServerBusy",
                "The server cannot service this request right now. Try again later.",
                {"BackOffMilliseconds": back_off},
            )
        box = None
        if mailbox is not None:
            if not sandbox.knobs.impersonation:
                return failure(
                    "ErrorImpersonateUserDenied",
                    "The account does not have permission to impersonate the requested user.",
                )
            box = sandbox.directory.mailbox(mailbox)
            if box is None:
                return failure(
                    "ErrorNonExistentMailbox",
                    "The SMTP address has no mailbox associated with it.",
                    {"SmtpAddress": mailbox},
                )
        elif operation in MAILBOX_OPERATIONS:
            return failure(
                "ErrorMissingEmailAddress",
                "When making a request as an account that does not have a mailbox, you must "
                "specify the mailbox primary SMTP address for any distinguished folder Ids.",
            )
        try:
            with sandbox.directory.lock:
                answer = OPERATIONS[operation](sandbox, box, request, entry)
        except OperationError as problem:
            answer = response(
                operation,
                [
                    response_message(
                        f"{operation}ResponseMessage", problem.code, problem.message, problem.values
                    )
                ],
            )
        codes = [c.text for c in answer.iterfind(".//m:ResponseCode", NSMAP)]
        entry["response_code"] = codes[0] if len(set(codes)) == 1 else codes
        return 200, answer, version

    # ----- sandbox-only control plane (not logged)

    def _control(self, path: str):
        try:
            body = json.loads(self.raw) if self.raw else {}
        except ValueError:
            return self._send(400, {"error": "the body must be JSON"})
        try:
            return self._control_route(self.command, path, body)
        except KeyError as missing:
            return self._send(404, {"error": f"not found: {missing}"})
        except (ValueError, TypeError) as problem:
            return self._send(400, {"error": str(problem)})

    def _control_route(self, method, path, body):
        sandbox = self.sandbox
        parts = [unquote(p) for p in path.split("/")]
        if (method, path) == ("GET", "health"):
            return self._send(200, {"ok": True})
        if path == "knobs" and method in ("GET", "POST"):
            shown = sandbox.set_knobs(body) if method == "POST" else sandbox.knobs.as_dict()
            return self._send(200, shown)
        if (method, path) == ("POST", "reset"):
            sandbox.reset()
            return self._send(200, {"ok": True})
        if path == "requests" and method == "GET":
            since = int((self.query.get("since") or ["0"])[-1])
            return self._send(200, {"value": sandbox.requests(since)})
        if path == "requests" and method == "DELETE":
            sandbox.clear_requests()
            return self._send(204)
        if (method, path) == ("GET", "subscriptions"):
            with sandbox.directory.lock:
                found = [s.public() for s in sandbox.push.subscriptions.values()]
            return self._send(200, {"value": found})
        if (method, path) == ("GET", "deliveries"):
            with sandbox.directory.lock:
                found = [dict(d) for d in sandbox.push.deliveries]
            return self._send(200, {"value": found})
        if parts[0] == "mailboxes":
            return self._mailboxes(method, parts[1:], body)
        if parts[0] == "groups":
            return self._groups(method, parts[1:], body)
        return self._send(404, {"error": "not_found"})

    def _groups(self, method, parts, body):
        """Distribution groups as if in Exchange admin: list, add (or replace), change the
        members ({"add": [...], "remove": [...]}), delete."""
        sandbox = self.sandbox
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        if not parts and method == "GET":
            return self._send(200, {"value": sandbox.list_groups()})
        if not parts and method == "POST":
            email = body.get("email")  # (a missing one is a bad request, not a 404)
            group = sandbox.add_group(email, body.get("name", email), body.get("members", []))
            return self._send(201, group)
        if len(parts) == 2 and parts[1] == "members" and method == "POST":
            if set(body) - {"add", "remove"}:
                raise ValueError('members changes are {"add": [...], "remove": [...]}')
            group = sandbox.change_group_members(
                parts[0], add=body.get("add", []), remove=body.get("remove", [])
            )
            return self._send(200, group)
        if len(parts) == 1 and method == "DELETE":
            sandbox.delete_group(parts[0])
            return self._send(204)
        return self._send(404, {"error": "not_found"})

    # ----- what Office.js does in the add-in's task pane (cross-origin, not logged)

    def _addin(self, path: str):
        if self.command == "OPTIONS":
            return self._send(204, b"", cors.PREFLIGHT)
        headers = {**cors.ALLOW, "Cache-Control": "no-store"}
        fields = {k: v[-1] for k, v in self.query.items()}
        if self.command == "POST":
            try:
                fields = json.loads(self.raw) if self.raw else None
            except ValueError:
                fields = None
            if not isinstance(fields, dict):
                return self._send(400, {"error": "the body must be a JSON object"}, headers)
        try:
            status, answer = self._addin_route(self.command, path, fields)
        except KeyError as missing:
            status, answer = 404, {"error": f"not found: {missing}"}
        except (ValueError, TypeError) as problem:
            status, answer = 400, {"error": str(problem)}
        return self._send(status, answer, headers)

    def _addin_route(self, method, path, fields):
        sandbox = self.sandbox
        for name in ("mailbox", "aud", "item_id", "addin_id"):
            if name in fields and not isinstance(fields[name], str):
                raise ValueError(f"{name} must be a string")
        if (method, path) == ("POST", "identity-token"):
            if not fields.get("mailbox") or not fields.get("aud"):
                raise ValueError("mailbox and aud are required")
            return 200, {"token": sandbox.identity_token(fields["mailbox"], fields["aud"])}
        if path == "custom-properties" and method in ("GET", "POST"):
            if not all(fields.get(n) for n in ("mailbox", "item_id", "addin_id")):
                raise ValueError("mailbox, item_id and addin_id are required")
            key = (fields["mailbox"], fields["item_id"], fields["addin_id"])
            if method == "POST":
                if not isinstance(fields.get("properties"), dict):
                    raise ValueError("properties must be a JSON object")
                sandbox.set_custom_properties(*key, fields["properties"])
            return 200, {"properties": sandbox.custom_properties(*key)}
        return 404, {"error": "not_found"}

    def _booking(self, email, booking):
        """A booking as the control plane shows it, with its EWS ItemId."""
        box = self.sandbox._box(email)
        return {**booking.public(), "item_id": box.item_id(booking)}

    def _mailboxes(self, method, parts, body):
        sandbox = self.sandbox
        if not parts and method == "GET":
            with sandbox.directory.lock:
                boxes = [
                    {"email": b.email, "name": b.name, "bookings": len(b.bookings)}
                    for b in sandbox.directory.mailboxes.values()
                ]
            return self._send(200, {"value": boxes})
        if not parts and method == "POST":
            box = sandbox.add_mailbox(
                body.get("email"), body.get("name"), body.get("extension"), body.get("mobile")
            )
            return self._send(201, {"email": box.email, "name": box.name})
        if len(parts) == 2 and parts[1] == "events" and method == "GET":
            box = sandbox._box(parts[0])
            with sandbox.directory.lock:
                found = [self._booking(parts[0], b) for b in box.bookings.values()]
            return self._send(200, {"value": found})
        if len(parts) == 2 and parts[1] == "events" and method == "POST":
            return self._send(201, self._booking(parts[0], sandbox.add_booking(parts[0], body)))
        if len(parts) == 3 and parts[1] == "events" and method == "PATCH":
            booking = sandbox.update_booking(parts[0], parts[2], body)
            return self._send(200, self._booking(parts[0], booking))
        if len(parts) == 3 and parts[1] == "events" and method == "DELETE":
            soft = (self.query.get("soft") or ["0"])[-1] in ("1", "true")
            sandbox.delete_booking(parts[0], parts[2], soft=soft)
            return self._send(204)
        return self._send(404, {"error": "not_found"})


class EwsServer(TLSServer):
    """The HTTPS server around an EwsSandbox; `start()` runs it in a background thread."""

    def __init__(self, host="127.0.0.1", port=8012, *, ca_file=None, ca=None, with_demo=True):
        self.sandbox = EwsSandbox(with_demo=with_demo)
        handler = type("BoundHandler", (Handler,), {"sandbox": self.sandbox})
        super().__init__(
            handler, host, port, ca=ca, ca_file=ca_file, ca_name="MSS EWS sandbox test CA"
        )
        self.ews_url = self.base_url + EWS_PATH
        self.sandbox.base_url = self.base_url

    def stop(self):
        self.sandbox.push.stop_all()
        super().stop()
        self.sandbox.accounts.close()
