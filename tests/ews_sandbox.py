"""Pytest fixtures: the EWS (Exchange on-premises) sandbox on a free port with its own test CA.

`ews` starts the real HTTPS server in this process and hands back a handle for the /_sandbox/
controls and for exchangelib accounts that trust the sandbox's CA (never by turning verification
off). Every SOAP message the sandbox sends while a test runs (answers, faults and the
SendNotification requests it pushes) is checked against Microsoft's EWS schema; the fixture
fails the test if one does not validate.
"""

import contextlib
import http.server
import threading
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
import requests.adapters
import trustme
from django.conf import settings
from lxml import etree

from sandbox.ews import DEFAULT_PASSWORD, DEFAULT_USERNAME, EwsServer

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ews-schema"
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
ERRORS = "{http://schemas.microsoft.com/exchange/services/2006/errors}"
TYPES = "{http://schemas.microsoft.com/exchange/services/2006/types}"
XS = "{http://www.w3.org/2001/XMLSchema}"


class EwsSchema:
    """messages.xsd, loaded once; `check(kind, payload)` raises on an invalid message."""

    def __init__(self, directory: Path = SCHEMA_DIR):
        self.schema = etree.XMLSchema(etree.parse(str(directory / "messages.xsd")))
        codes = etree.parse(str(directory / "messages.xsd")).find(
            f"{XS}simpleType[@name='ResponseCodeType']"
        )
        self.response_codes = {e.get("value") for e in codes.iter(f"{XS}enumeration")}

    def check(self, payload: bytes) -> str:
        """Validate a SOAP envelope's body element; return its local name."""
        root = etree.fromstring(payload)
        body = root.find(f"{SOAP}Body")
        assert body is not None and len(body) == 1, "one element in soap:Body"
        element = body[0]
        header = root.find(f"{SOAP}Header")
        for part in header if header is not None else ():
            self.schema.assertValid(etree.ElementTree(part))  # t:ServerVersionInfo
        if element.tag == f"{SOAP}Fault":
            return self._check_fault(element)
        self.schema.assertValid(etree.ElementTree(element))
        return etree.QName(element).localname

    def _check_fault(self, fault) -> str:
        # A SOAP 1.1 fault (not in messages.xsd): faultcode, faultstring, detail with the EWS
        # response code (which must be one of the schema's ResponseCodeType values).
        names = [child.tag for child in fault]
        assert names == ["faultcode", "faultstring", "detail"], names
        code = fault.findtext(f"detail/{ERRORS}ResponseCode")
        assert code in self.response_codes, code
        assert fault.findtext("faultcode").endswith(code)
        for value in fault.findall(f"detail/{TYPES}MessageXml/*"):
            assert value.tag == f"{TYPES}Value" and value.get("Name"), etree.tostring(value)
        return f"Fault:{code}"


class CheckedMessages:
    """The sandbox's observer: validates every message, keeps what it saw and what failed."""

    def __init__(self, schema: EwsSchema):
        self.schema = schema
        self.seen: list[tuple[str, str]] = []
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, payload: bytes):
        try:
            name = self.schema.check(payload)
        except (AssertionError, etree.DocumentInvalid, etree.XMLSyntaxError) as problem:
            with self.lock:
                self.failures.append(f"{kind}: {problem}\n{payload[:2000]!r}")
            return
        with self.lock:
            self.seen.append((kind, name))


def ca_adapter(ca_file: str):
    """exchangelib's documented way to trust a private root CA: an HTTPAdapter subclass."""

    class SandboxCAAdapter(requests.adapters.HTTPAdapter):
        def cert_verify(self, conn, url, verify, cert):
            super().cert_verify(conn=conn, url=url, verify=ca_file, cert=cert)

    return SandboxCAAdapter


class EwsHandle:
    def __init__(self, server: EwsServer, checked: CheckedMessages):
        self.server = server
        self.sandbox = server.sandbox  # in-process state, for assertions only
        self.url = server.base_url
        self.ews_url = server.ews_url
        self.ca_file = str(server.ca_file)
        self.checked = checked
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = self.ca_file

    def control(self, method, path, payload=None):
        response = self.http.request(
            method, f"{self.url}/_sandbox/{path}", json=payload, timeout=15
        )
        response.raise_for_status()
        return response.json() if response.content else None

    # knobs, log, subscriptions, deliveries
    def knobs(self, **changes):
        return self.control("POST", "knobs", changes) if changes else self.control("GET", "knobs")

    def requests(self, since=0, operation=None):
        entries = self.control("GET", f"requests?since={since}")["value"]
        return [e for e in entries if operation is None or e.get("operation") == operation]

    def clear_requests(self):
        self.control("DELETE", "requests")

    def asked_fields(self) -> set[str]:
        return {uri for entry in self.requests() for uri in entry.get("fields", ())}

    def subscriptions(self):
        return self.control("GET", "subscriptions")["value"]

    def deliveries(self):
        return self.control("GET", "deliveries")["value"]

    def reset(self):
        self.control("POST", "reset")

    # mailboxes and changes as if in Outlook (each fires push notifications)
    def add_mailbox(self, email, name=None):
        return self.control("POST", "mailboxes", {"email": email, "name": name or email})

    # distribution groups as if in Exchange admin: a member is a mailbox's or group's address,
    # or an external contact {"email", "name", "type": "Contact"}
    def add_group(self, email, name, members=()):
        return self.control("POST", "groups", {"email": email, "name": name,
                                               "members": list(members)})  # fmt: skip

    def add_group_members(self, email, members):
        return self.control("POST", f"groups/{email}/members", {"add": list(members)})

    def remove_group_members(self, email, members):
        return self.control("POST", f"groups/{email}/members", {"remove": list(members)})

    def delete_group(self, email):
        self.control("DELETE", f"groups/{email}")

    def groups(self):
        return self.control("GET", "groups")["value"]

    def bookings(self, mailbox):
        return self.control("GET", f"mailboxes/{mailbox}/events")["value"]

    def create_event(self, mailbox, **event):
        return self.control("POST", f"mailboxes/{mailbox}/events", event)

    def update_event(self, mailbox, event_id, **changes):
        return self.control("PATCH", f"mailboxes/{mailbox}/events/{event_id}", changes)

    def delete_event(self, mailbox, event_id, soft=False):
        suffix = "?soft=1" if soft else ""
        return self.control("DELETE", f"mailboxes/{mailbox}/events/{event_id}{suffix}")

    # the Outlook add-in: what Office.js gets from Exchange in the task pane
    def metadata(self) -> dict:
        """The auth metadata document (anonymous GET, as the product fetches it)."""
        response = self.http.get(f"{self.url}/autodiscover/metadata/json/1", timeout=15)
        response.raise_for_status()
        return response.json()

    def identity_token(self, mailbox, aud) -> str:
        """getUserIdentityTokenAsync in `mailbox` for the add-in page `aud`."""
        return self.control("POST", "addin/identity-token", {"mailbox": mailbox, "aud": aud})[
            "token"
        ]

    def set_custom_properties(self, mailbox, item_id, properties, addin_id=None):
        """Office's customProperties.saveAsync on an item or occurrence (an EWS ItemId, or a
        booking id): pushes a ModifiedEvent. Returns the saved properties."""
        payload = {
            "mailbox": mailbox,
            "item_id": item_id,
            "addin_id": addin_id or settings.MS_ADDIN_ID,
            "properties": properties,
        }
        return self.control("POST", "addin/custom-properties", payload)["properties"]

    def custom_properties(self, mailbox, item_id, addin_id=None) -> dict:
        query = {
            "mailbox": mailbox,
            "item_id": item_id,
            "addin_id": addin_id or settings.MS_ADDIN_ID,
        }
        return self.control("GET", f"addin/custom-properties?{urlencode(query)}")["properties"]

    def spoil_identity_tokens(self, **knob):
        """The `identity_token` knob: expired=True, amurl="<URL>", unknown_key=True,
        wrong_audience=True or "<aud>" (all off again with no arguments)."""
        return self.knobs(identity_token=knob)

    # exchangelib, as the product connects
    def account(
        self,
        email,
        *,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        auth_type=None,
        version=None,
        max_wait=10,
        max_connections=4,
    ):
        """An exchangelib Account as the product makes one (max_wait=None: FailFast)."""
        from exchangelib import IMPERSONATION, NTLM, Account, Configuration, Credentials
        from exchangelib.protocol import FailFast, FaultTolerance, Protocol

        config = Configuration(
            service_endpoint=self.ews_url,
            credentials=Credentials(username, password),
            auth_type=auth_type or NTLM,
            version=version,
            retry_policy=FaultTolerance(max_wait=max_wait) if max_wait else FailFast(),
            max_connections=max_connections,
        )
        # exchangelib caches protocols by (endpoint, credentials) only: drop a cached one so
        # this account's auth type and retry policy are the ones used.
        with contextlib.suppress(KeyError):
            del Protocol[config]
        return Account(
            primary_smtp_address=email,
            config=config,
            autodiscover=False,
            access_type=IMPERSONATION,
        )


class PushReceiver:
    """The product's push endpoint as a small HTTP server: parses each SendNotification with
    exchangelib and answers OK, Unsubscribe, or fails (`answer` = "OK"|"Unsubscribe"|500)."""

    def __init__(self):
        self.answer = "OK"
        # Cleared, the receiver holds every delivery unanswered (Exchange's pusher then waits,
        # as it does for a slow endpoint, and changes pile up behind it).
        self.open = threading.Event()
        self.open.set()
        self.notifications = []  # exchangelib Notification objects, in arrival order
        self.hits = 0
        self.changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                from exchangelib.services import SendNotification

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                service = SendNotification(protocol=None)
                with receiver.changed:
                    receiver.hits += 1
                    answer = receiver.answer
                    receiver.changed.notify_all()
                receiver.open.wait(timeout=30)
                if answer == 500:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                parsed = list(service.parse(body))
                payload = service.ok_payload() if answer == "OK" else service.unsubscribe_payload()
                with receiver.changed:
                    receiver.notifications.extend(parsed)
                    receiver.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format, *args):  # noqa: A002
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = (
            f"http://127.0.0.1:{self.httpd.server_address[1]}/MSS/services/EWSNotificationService"
        )
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def events(self):
        with self.changed:
            return [event for n in self.notifications for event in n.events]

    def wait_for(self, predicate, timeout=10.0, message="notification"):
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self), timeout=timeout):
                raise AssertionError(f"timed out waiting for {message}")

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def ews_schema():
    return EwsSchema()


@pytest.fixture(scope="session")
def ews_ca():
    return trustme.CA(organization_name="MSS EWS sandbox test CA")


@pytest.fixture
def ews(tmp_path, ews_ca, ews_schema):
    from exchangelib.protocol import BaseProtocol, Protocol

    server = EwsServer(port=0, ca_file=tmp_path / "ews-ca.pem", ca=ews_ca).start()
    checked = CheckedMessages(ews_schema)
    server.sandbox.observers.append(checked)
    saved_adapter = BaseProtocol.HTTP_ADAPTER_CLS
    BaseProtocol.HTTP_ADAPTER_CLS = ca_adapter(str(server.ca_file))
    handle = EwsHandle(server, checked)
    yield handle
    BaseProtocol.HTTP_ADAPTER_CLS = saved_adapter
    Protocol.clear_cache()
    handle.http.close()
    server.stop()
    assert not checked.failures, "\n\n".join(checked.failures)


@pytest.fixture
def push_receiver():
    receiver = PushReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def on_prem(ews, settings):
    """The product pointed at the EWS sandbox as in production, only with the sandbox's CA
    (EWS_CA_BUNDLE, through the product's own adapter) and its loopback address let through:
    `on_prem(company, mailbox, status=…)` makes an Exchange On Prem integration on it and adds
    the mailbox to the sandbox."""
    from exchangelib.protocol import BaseProtocol

    from calendarsync.models import Integration
    from calendarsync.providers.ews import client

    BaseProtocol.HTTP_ADAPTER_CLS = client.TrustedCAAdapter
    settings.EWS_CA_BUNDLE = str(ews.ca_file)
    settings.OUTBOUND_ALLOWED_HOSTS = [f"127.0.0.1:{ews.server.port}"]
    settings.EWS_MAX_WAIT = 5
    made = []

    def make(company, mailbox, *, status=Integration.Status.CONNECTED, name=None):
        ews.add_mailbox(mailbox, name or mailbox.split("@")[0])
        integration = Integration.objects.create(
            company=company,
            kind=Integration.Kind.EWS,
            name="Exchange On Prem",
            status=status,
            ews_url=ews.ews_url,
            ews_username=DEFAULT_USERNAME,
            ews_password=DEFAULT_PASSWORD,
        )
        made.append(integration)
        return integration

    yield make
    for integration in made:
        client.forget(integration)
