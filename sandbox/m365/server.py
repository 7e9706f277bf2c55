"""A Microsoft 365 stand-in: sign-in (OpenID, tokens, admin consent) and Microsoft Graph.

Signing a person in (authorize, the sign-in page, authorization codes, ID tokens, keys) is in
signin.py; what Outlook gives the add-in's task pane (NAA tokens, custom properties, the Office.js
stub, under /_sandbox/addin/) is in addin.py.

A real HTTPS server (a trustme test CA made at start) speaking Graph's wire format for what the
product uses: users, calendarView, events, subscriptions with webhook deliveries, $batch. As
strict as Graph: query options are checked in odata.py (a malformed value is a 400 in Graph's
error shape, errors.py, with request ids on every answer), time zones are any Windows or IANA
name (timezones.py, CLDR's table), events Graph would refuse are refused (calendar.py), $batch
runs in any order honouring dependsOn (batch.py), notification URLs must be https and are
delivered to on Graph's schedule: several per POST, retries with backoff for 4 hours, the slow and
drop thresholds (delivery.py).
Sandbox-only endpoints under /_sandbox/ let tests and the demo turn knobs (latency, throttling,
revoked consent, consent outcome, sign-in, spoiled ID tokens, the delivery schedule), register
redirect URIs, add tenants and events, fire lifecycle events, and read the request log, the
deliveries and the sandbox's own crashes.
"""

import copy
import html
import ipaddress
import itertools
import json
import re
import secrets
import ssl
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from .. import cors
from ..tls import TLSHandler, TLSServer
from . import addin, batch, calendar, delivery, demo, errors, groups, odata, signin
from .errors import GraphError, graph_error

DEFAULT_CLIENT_ID = "00000000-0000-0000-0000-0000000000aa"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"
# The app registration's display name, as Microsoft shows it (the product's MS_APP_DISPLAY_NAME).
DEFAULT_APP_NAME = "MSS Kalenderkoppling"
EXTENDED_PROPERTY_SET = "{00020329-0000-0000-C000-000000000046}"
SUBSCRIPTION_MAX_MINUTES = 4230
MAILBOX_CONCURRENCY = 4
BATCH_LIMIT = batch.BATCH_LIMIT
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000  # Exchange's largest calendarView page
MAX_USERS_PAGE = 999  # the directory's
# Properties of microsoft.graph.user the sandbox knows ($select); a user lacks most of them.
USER_PROPERTIES = {
    "id",
    "displayName",
    "mail",
    "userPrincipalName",
    "givenName",
    "surname",
    "jobTitle",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "businessPhones",
    "accountEnabled",
}
USER_FILTER = odata.Filterable(
    "microsoft.graph.user",
    {
        **{name: "Edm.String" for name in ("id", "displayName", "mail", "userPrincipalName")},
        **{name: "Edm.String" for name in ("givenName", "surname", "jobTitle")},
        "accountEnabled": "Edm.Boolean",
    },
)
EVENT_FILTER = odata.Filterable(
    "microsoft.graph.event", calendar.FILTERABLE, calendar.NOT_FILTERABLE
)
LOG_LIMIT = 200_000
RECORDED_HEADERS = ("content-type", "accept", "prefer", "client-request-id", "user-agent")
RECORDED_HEADERS += ("sdkversion", "consistencylevel")

# What a revoked consent looks like at the token endpoint, by AADSTS code.
REVOKED_ERRORS = {
    "700016": (
        "unauthorized_client",
        "AADSTS700016: Application with identifier '{client}' was not found in the directory "
        "'{tenant}'. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant.",
    ),
    "7000229": (
        "invalid_client",
        "AADSTS7000229: The client application {client} is missing service principal in the "
        "tenant {tenant}.",
    ),
    "7000112": (
        "unauthorized_client",
        "AADSTS7000112: Application '{client}' is disabled.",
    ),
}


# Graph's clock may run ahead of the machine's (knob "clock_offset_seconds"), for benchmarks
# that play days in minutes (bench_idle): subscription expiries follow it; tokens keep real
# time, as the clients' token caches do.
CLOCK = {"offset_seconds": 0.0}


def now_utc() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=CLOCK["offset_seconds"])


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class Sandbox:
    """The sandbox's state and behaviour, independent of HTTP (so $batch can reuse it)."""

    def __init__(
        self,
        *,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        state_file=None,
        with_demo=True,
        addin_id=demo.DEFAULT_ADDIN_ID,
        redirect_uris=(),
        app_name=DEFAULT_APP_NAME,
        allow_http_loopback=False,
    ):
        self.client_id = client_id
        self.app_name = app_name
        # `make run`'s one concession: its runserver has no TLS, so the demo may subscribe an
        # http://127.0.0.1 URL. Everything else (tests, benchmarks) delivers over https.
        self.allow_http_loopback = allow_http_loopback
        self.addin_id = addin_id
        self.client_secret = client_secret
        self.state_file = Path(state_file) if state_file else None
        self.lock = threading.RLock()
        self.base_url = ""
        self.tenants: dict[str, dict] = {}
        self.subscriptions: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}
        self._user_index: dict[str, tuple[dict, dict]] = {}
        self.signin = signin.SignIn(self, redirect_uris)
        self.knobs: dict = {}
        self.reset_knobs()
        self.log: list[dict] = []
        self.log_seq = itertools.count(1)
        self.deliveries: list[dict] = []
        # Requests the sandbox could not answer as Graph would (a bug here, never the client's
        # fault), and stored events it could not read: tests assert both stay empty.
        self.crashes: list[dict] = []
        self.in_flight: dict[str, int] = defaultdict(int)
        self.peak_in_flight: dict[str, int] = defaultdict(int)
        # Graph delivers to public https endpoints; the sandbox trusts the public CAs (the
        # system's) and its own test CA, which is what tests issue the product's certificate from.
        self.ssl_context = ssl.create_default_context()
        self.deliverer = delivery.Deliverer(
            lambda: self.knobs, self._log_delivery, self.ssl_context
        )
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self.ssl_context)
        )
        self.started = now_utc()
        if with_demo:
            self.tenants[demo.DEMO_TENANT_ID] = demo.demo_tenant(self.started, addin_id)
            self.tenants[demo.DEMO_TENANT_ID]["consented"] = True
        self._load()

    # ----- persistence (make run keeps consent, subscriptions and events across restarts)

    def _load(self):
        if not self.state_file or not self.state_file.exists():
            return
        saved = json.loads(self.state_file.read_text())
        fresh_demo = self.tenants.get(demo.DEMO_TENANT_ID)
        self.tenants.update(saved.get("tenants", {}))
        self.subscriptions.update(saved.get("subscriptions", {}))
        if not fresh_demo or demo.DEMO_TENANT_ID not in saved.get("tenants", {}):
            return
        if saved.get("anchor") != date.today().isoformat():
            # The demo fortnight is relative to today: rebuild it, keep the consent.
            fresh_demo["consented"] = self.tenants[demo.DEMO_TENANT_ID].get("consented", True)
            self.tenants[demo.DEMO_TENANT_ID] = fresh_demo
            return
        # Same day: keep the saved calendars (changes made since), but the bookings going on
        # "now" are this start's, wherever an earlier start today put them.
        kept = self.tenants[demo.DEMO_TENANT_ID]
        kept.setdefault("roles", fresh_demo["roles"])  # saved before the sign-in had roles
        kept.setdefault("directory", fresh_demo["directory"])  # saved before it had groups
        for email, events in demo.happening_now(self.started, self.addin_id).items():
            mailbox = kept["events"].setdefault(demo.user_id(email), {})
            mailbox.update({event["id"]: event for event in events})

    def save(self):
        if not self.state_file:
            return
        # Under the lock up to the rename: request threads save concurrently (two subscriptions
        # created at once), and they share the temporary file; the last snapshot must win.
        with self.lock:
            data = json.dumps(
                {
                    "anchor": date.today().isoformat(),
                    "tenants": self.tenants,
                    "subscriptions": self.subscriptions,
                }
            )
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(data)
            tmp.replace(self.state_file)

    def reset_knobs(self):
        self.knobs = {
            "latency_ms": 0,
            # [{"match": "calendarView", "count": 1, "retry_after": 1}] → 429s
            "throttle": [],
            # {"mode": "form"|"accept"|"decline"|"error"|"no_return", "tenant": id,
            #  "error": ..., "error_description": ...}
            "consent": {"mode": "form"},
            # {"mode": "form"} (the sign-in page) | {"mode": "auto", "user": email} (signed in at
            # once) | {"mode": "error", "error": ..., "error_description": ...}
            "signin": {"mode": "form"},
            # Spoiled ID tokens, for the relying party's tests (see signin.SignIn.id_token).
            "id_token": {"wrong_nonce": False, "wrong_tenant": None, "unknown_key": False},
            # Spoiled add-in access tokens (see addin.issue_tokens): expired, wrong_audience
            # (True or the aud to put), wrong_issuer, unknown_key.
            "addin_token": dict(addin.NO_SPOILING),
            "log": True,
            # Graph's delivery schedule (delivery.py): 1.0 is real time, 0.001 plays 4 hours in
            # 14 s; the answer limit (10 s) and how long a notification waits for company.
            **delivery.DEFAULT_KNOBS,
        }

    def trust(self, ca_pem: str):
        """Trust another CA for deliveries (as Graph trusts the public ones)."""
        self.ssl_context.load_verify_locations(cadata=ca_pem)

    def close(self):
        self.deliverer.stop()

    def _log_delivery(self, entry: dict):
        with self.lock:
            self.deliveries.append(entry)

    def crashed(self, what: str, detail: str):
        with self.lock:
            self.crashes.append({"what": what, "detail": detail, "time": time.time()})

    # ----- request log

    def record(self, entry: dict):
        if not self.knobs.get("log", True):
            return
        entry["seq"] = next(self.log_seq)
        entry["time"] = time.time()
        with self.lock:
            self.log.append(entry)
            if len(self.log) > LOG_LIMIT:
                del self.log[: len(self.log) - LOG_LIMIT]

    # ----- tenants and users

    def add_tenant(self, tenant_id=None, name="Tenant", users=(), consented=True) -> dict:
        tenant_id = tenant_id or demo.user_id(secrets.token_hex(8))
        tenant = {
            "id": tenant_id,
            "name": name,
            "consented": consented,
            "users": {},
            "events": {},
            "roles": {},  # user id → directory role template ids (the ID token's wids)
        }
        with self.lock:
            self.tenants[tenant_id] = tenant
            for user in users:
                self.add_user(
                    tenant_id,
                    user["mail"],
                    user.get("displayName", user["mail"]),
                    wids=user.get("wids"),
                )
        return tenant

    def add_user(
        self, tenant_id: str, mail: str, name: str, *, fortnight=False, index=0, wids=None
    ):
        user = demo.make_user(mail.lower(), name)
        with self.lock:
            tenant = self.tenants[tenant_id]
            tenant["users"][user["id"]] = user
            if wids:
                tenant.setdefault("roles", {})[user["id"]] = list(wids)
            tenant["events"].setdefault(user["id"], {})
            if fortnight:
                for event in demo.fortnight(mail.lower(), index, now_utc()):
                    tenant["events"][user["id"]][event["id"]] = event
        return user

    def find_user(self, tenant: dict, key: str) -> dict | None:
        """A user by id, mail or UPN (case-insensitive), through an index kept per tenant."""
        key = key.lower()
        index = self._user_index.get(tenant["id"])
        if index is None or len(index[0]) != len(tenant["users"]):
            users = dict(tenant["users"])
            lookup = {}
            for user in users.values():
                for name in (user["id"], user["mail"], user["userPrincipalName"]):
                    lookup[name.lower()] = user
            index = (users, lookup)
            self._user_index[tenant["id"]] = index
        return index[1].get(key)

    def tenant_of_user(self, key: str) -> tuple[dict, dict] | tuple[None, None]:
        for tenant in self.tenants.values():
            user = self.find_user(tenant, key)
            if user:
                return tenant, user
        return None, None

    # ----- sign-in

    def openid_configuration(self, tenant: str) -> dict:
        base = f"{self.base_url}/{tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.base_url}/{tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.base_url}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }

    def token(self, tenant_key: str, form: dict, authorization=None) -> tuple[int, dict]:
        fail = signin.token_error
        if form.get("grant_type") == "authorization_code":
            return self.signin.redeem(tenant_key, form, authorization)
        if form.get("grant_type") != "client_credentials":
            return fail(
                400,
                "unsupported_grant_type",
                "70003",
                "AADSTS70003: The app requested an unsupported grant type.",
            )
        tenant = self.tenants.get(tenant_key)
        if tenant is None:
            return fail(
                400, "invalid_request", "90002", f"AADSTS90002: Tenant '{tenant_key}' not found."
            )
        if form.get("client_id") != self.client_id:
            return fail(
                400,
                *REVOKED_ERRORS["700016"][:1],
                "700016",
                REVOKED_ERRORS["700016"][1].format(client=form.get("client_id"), tenant=tenant_key),
            )
        if form.get("client_secret") != self.client_secret:
            return fail(
                401, "invalid_client", "7000215", "AADSTS7000215: Invalid client secret provided."
            )
        if not tenant["consented"]:
            code = tenant.get("revoked_code", "7000229")
            error, template = REVOKED_ERRORS[code]
            return fail(400, error, code, template.format(client=self.client_id, tenant=tenant_key))
        if form.get("scope") != "https://graph.microsoft.com/.default":
            return fail(
                400,
                "invalid_scope",
                "1002012",
                "AADSTS1002012: The provided value for scope is not valid.",
            )
        access_token = "sbx." + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[access_token] = {"tenant": tenant["id"], "exp": time.time() + 3599}
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": access_token,
        }

    def set_consent(self, tenant_id: str, consented: bool, *, code="7000229"):
        """Grant or revoke the app's consent in a tenant. Revoking fires reauthorizationRequired."""
        with self.lock:
            tenant = self.tenants[tenant_id]
            tenant["consented"] = consented
            tenant["revoked_code"] = code
            if not consented:
                for token in [t for t, v in self.tokens.items() if v["tenant"] == tenant_id]:
                    del self.tokens[token]
                affected = [s for s in self.subscriptions.values() if s["tenantId"] == tenant_id]
            else:
                affected = []
        for subscription in affected:
            self.send_lifecycle(subscription["id"], "reauthorizationRequired")
        self.save()

    # ----- Graph

    def authenticate(self, authorization: str) -> tuple[dict | None, tuple | None]:
        token = authorization[7:] if authorization.startswith("Bearer ") else ""
        with self.lock:
            info = self.tokens.get(token)
        if info is None or info["exp"] < time.time():
            return None, graph_error(
                401, "InvalidAuthenticationToken", "Access token is empty or invalid."
            )
        tenant = self.tenants.get(info["tenant"])
        if tenant is None or not tenant["consented"]:
            return None, graph_error(
                401, "InvalidAuthenticationToken", "Access token validation failure."
            )
        if tenant.get("permissions_removed"):
            return None, graph_error(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        return tenant, None

    def throttled(self, path: str) -> tuple | None:
        with self.lock:
            for rule in self.knobs.get("throttle", []):
                if rule.get("count", 0) > 0 and rule.get("match", "") in path:
                    rule["count"] -= 1
                    status, headers, body = graph_error(
                        429,
                        "ApplicationThrottled",
                        "Application is over its MailboxConcurrency limit."
                        if "users" in path
                        else "Too many requests.",
                    )
                    return status, {"Retry-After": str(rule.get("retry_after", 1))}, body
        return None

    @contextmanager
    def mailbox_slot(self, mailbox: str | None):
        """Exchange allows 4 concurrent requests per app and mailbox; the 5th gets a 429."""
        if mailbox is None:
            yield True
            return
        with self.lock:
            self.in_flight[mailbox] += 1
            allowed = self.in_flight[mailbox] <= MAILBOX_CONCURRENCY
            self.peak_in_flight[mailbox] = max(
                self.peak_in_flight[mailbox], self.in_flight[mailbox]
            )
        try:
            yield allowed
        finally:
            with self.lock:
                self.in_flight[mailbox] -= 1

    def graph(
        self,
        tenant: dict,
        method: str,
        path: str,
        query: dict,
        headers: dict,
        body: dict | None,
        *,
        delay: float = 0.0,
    ) -> tuple[int, dict, dict | None]:
        """One Graph request (also an inner $batch request). Returns status, headers, JSON."""
        throttled = self.throttled(path)
        if throttled:
            return throttled
        parts = [unquote(p) for p in path.split("/") if p]
        mailbox = parts[1].lower() if len(parts) >= 2 and parts[0] == "users" else None
        with self.mailbox_slot(mailbox) as allowed:
            if delay:
                time.sleep(delay)
            if not allowed:
                status, _, error = graph_error(
                    429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit."
                )
                return status, {"Retry-After": "1"}, error
            try:
                return self._route_graph(
                    tenant, method, parts, odata.canonical(query), headers, body
                )
            except GraphError as refused:
                return refused.answer()

    def _route_graph(self, tenant, method, parts, query, headers, body):
        if parts == ["users"] and method == "GET":
            return self.list_users(tenant, query)
        if len(parts) >= 2 and parts[0] == "users":
            user = self.find_user(tenant, parts[1])
            if user is None:
                return graph_error(
                    404, "ErrorInvalidUser", f"The requested user '{parts[1]}' is invalid."
                )
            rest = parts[2:]
            if rest and rest[0] == "calendar" and rest[1:] in (["calendarView"], ["events"]):
                rest = rest[1:]
            if rest == [] and method == "GET":
                return self.get_user(user, query)
            if rest == ["calendarView"] and method == "GET":
                return self.calendar_view(tenant, user, query, headers)
            if rest == ["events"] and method == "GET":
                return self.list_events(tenant, user, query, headers)
            if rest == ["events"] and method == "POST":
                return self.create_event(tenant, user, body or {})
            if len(rest) == 2 and rest[0] == "events":
                return self.event_item(tenant, user, rest[1], method, query, headers, body)
        if parts and parts[0] == "subscriptions":
            return self.subscriptions_api(tenant, method, parts[1:], body or {})
        if parts and parts[0] == "groups":
            with self.lock:
                return groups.route(
                    tenant, method, parts[1:], query, headers, self.base_url, USER_PROPERTIES
                )
        return graph_error(
            400, "BadRequest", f"Resource not found for the segment '{parts[-1] if parts else ''}'."
        )

    # ----- users

    def get_user(self, user, query):
        odata.refuse_unknown(query, {"$select"})
        if "$select" not in query:
            return 200, {}, user
        fields = odata.select(query, USER_PROPERTIES, set(user), "microsoft.graph.user")
        return 200, {}, self._user_fields(user, fields)

    @staticmethod
    def _user_fields(user, fields) -> dict:
        # Graph always returns the id; an unset property comes back as null.
        return {name: user.get(name) for name in ["id", *sorted(fields - {"id"})]}

    def list_users(self, tenant, query):
        odata.refuse_unknown(query, {"$select", "$filter", "$top", "$skiptoken", "$count"})
        top = odata.non_negative(query, "$top", 100)
        if not 1 <= top <= MAX_USERS_PAGE:
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_USERS_PAGE} "
                "inclusive.",
            )
        skip = self._skiptoken(query)
        users = sorted(tenant["users"].values(), key=lambda u: u["mail"])
        if "$filter" in query:
            matches = odata.compile_filter(query["$filter"], USER_FILTER)
            users = [u for u in users if matches(u)]
        with_count = odata.count(query)
        if "$select" in query:
            fields = odata.select(query, USER_PROPERTIES, USER_PROPERTIES, "microsoft.graph.user")
            shape = lambda u: self._user_fields(u, fields)  # noqa: E731
        else:
            shape = lambda u: u  # noqa: E731
        page = [shape(u) for u in users[skip : skip + top]]
        result = {"@odata.context": f"{self.base_url}/v1.0/$metadata#users", "value": page}
        if with_count:
            result["@odata.count"] = len(users)
        if skip + top < len(users):
            next_query = dict(query, **{"$skiptoken": self._page_token(skip + top)})
            result["@odata.nextLink"] = (
                f"{self.base_url}/v1.0/users?{urlencode(next_query, quote_via=quote)}"
            )
        return 200, {}, result

    @staticmethod
    def _page_token(offset: int) -> str:
        return f"X'{offset:08X}'"  # opaque to clients, as the directory's are

    @staticmethod
    def _skiptoken(query) -> int:
        raw = query.get("$skiptoken")
        if raw is None:
            return 0
        match = re.fullmatch(r"X'([0-9A-F]{8})'", raw)
        if not match:
            raise GraphError(
                400,
                "Directory_ExpiredPageToken",
                "The specified page token value has expired and can no longer be included in "
                "your request.",
            )
        return int(match.group(1), 16)

    # ----- calendar reads

    @staticmethod
    def prefer(headers: dict) -> dict:
        found = {}
        for part in headers.get("prefer", "").split(","):
            if "=" in part:
                key, value = part.strip().split("=", 1)
                found[key.strip().lower()] = value.strip().strip('"')
        return found

    @staticmethod
    def preferred_zone(prefer: dict) -> str:
        name = prefer.get("outlook.timezone", "UTC") or "UTC"
        try:
            calendar.zone(name)
        except ValueError:
            raise calendar.unknown_zone_error(name) from None
        return name

    def parse_select(self, query) -> set[str]:
        return odata.select(
            query, calendar.EVENT_PROPERTIES, calendar.DEFAULT_PROPERTIES, "microsoft.graph.event"
        )

    def _window(self, query) -> tuple[datetime, datetime]:
        try:
            start = datetime.fromisoformat(query["startDateTime"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(query["endDateTime"].replace("Z", "+00:00"))
        except (KeyError, ValueError, AttributeError):
            raise GraphError(
                400,
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query "
                "string parameters StartDateTime and EndDateTime.",
            ) from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        return start, end

    def _page(self, items, query, headers, default_fields):
        """One page of events: $filter, $orderby, $count, $skip with $top or maxpagesize,
        $select and $expand, times in the preferred zone. Returns (rendered events, headers,
        extra result keys, whether more follow, the next page's $skip)."""
        fields = odata.select(
            query, calendar.EVENT_PROPERTIES, default_fields, "microsoft.graph.event"
        )
        expand_id = odata.expand_extended_property(query)
        if "$filter" in query:
            matches = odata.compile_filter(query["$filter"], EVENT_FILTER)
            items = [item for item in items if matches(item)]
        for path, descending in reversed(odata.orderby(query, calendar.ORDERABLE)):
            items = sorted(items, key=calendar.sort_key(path), reverse=descending)
        with_count = odata.count(query)
        prefer = self.prefer(headers)
        tz_name = self.preferred_zone(prefer)
        max_page = odata.page_size_preference(prefer)
        top = odata.non_negative(query, "$top", 0) if "$top" in query else None
        skip = odata.non_negative(query, "$skip", 0)
        page_size = max(1, min(top or max_page or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE))
        page = items[skip : skip + page_size]
        applied = [f'outlook.timezone="{tz_name}"']
        if max_page is not None:
            applied.append(f"odata.maxpagesize={page_size}")
        rendered = [calendar.render(item, fields, tz_name, expand_id) for item in page]
        extra = {"@odata.count": len(items)} if with_count else {}
        more = skip + page_size < len(items)
        return rendered, {"Preference-Applied": ", ".join(applied)}, extra, more, skip + page_size

    def _listing(self, user, segment, query, rendered, out_headers, extra, more, next_skip):
        result = {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#users('{user['id']}')/{segment}",
            **extra,
            "value": rendered,
        }
        if more:
            next_query = dict(query, **{"$skip": str(next_skip)})
            result["@odata.nextLink"] = (
                f"{self.base_url}/v1.0/users/{user['id']}/{segment}?"
                f"{urlencode(next_query, quote_via=quote)}"
            )
        return 200, out_headers, result

    def _stored_events(self, tenant, user) -> list[dict]:
        with self.lock:
            return list(tenant["events"].get(user["id"], {}).values())

    def calendar_view(self, tenant, user, query, headers):
        odata.refuse_unknown(
            query, {"$select", "$expand", "$filter", "$top", "$skip", "$orderby", "$count"}
        )
        start, end = self._window(query)
        unreadable: list = []
        instances = calendar.calendar_view(
            self._stored_events(tenant, user), start, end, unreadable
        )
        if unreadable:
            self.crashed("unreadable stored events", f"{user['mail']}: {unreadable}")
        page = self._page(instances, query, headers, calendar.DEFAULT_PROPERTIES)
        return self._listing(user, "calendarView", query, *page)

    def list_events(self, tenant, user, query, headers):
        """`/users/{id}/events`: single instances and series masters (never occurrences)."""
        odata.refuse_unknown(
            query, {"$select", "$expand", "$filter", "$top", "$skip", "$orderby", "$count"}
        )
        unreadable: list = []
        events = sorted(
            calendar.readable(self._stored_events(tenant, user), unreadable),
            key=lambda e: (str(e.get("createdDateTime", "")), e["id"]),
        )
        if unreadable:
            self.crashed("unreadable stored events", f"{user['mail']}: {unreadable}")
        page = self._page(events, query, headers, calendar.DEFAULT_PROPERTIES)
        return self._listing(user, "events", query, *page)

    # ----- events

    def create_event(self, tenant, user, body):
        if not isinstance(body, dict):
            raise GraphError(400, "UnableToDeserializePostBody", "were unable to deserialize")
        event = demo.make_event(
            user["mail"], secrets.token_hex(8), body.get("subject", ""), now_utc(), now_utc()
        )
        event.update(copy.deepcopy(body))
        event["id"] = "AAMkAD" + secrets.token_hex(16)
        event["type"] = "seriesMaster" if body.get("recurrence") else "singleInstance"
        event["changeKey"] = secrets.token_hex(8)
        calendar.check_event(event)
        with self.lock:
            tenant["events"].setdefault(user["id"], {})[event["id"]] = event
        self.notify(tenant, user, event["id"], "created")
        self.save()
        return 201, {}, calendar.render(event, calendar.DEFAULT_PROPERTIES, "UTC", None)

    def event_item(self, tenant, user, event_id, method, query, headers, body):
        with self.lock:
            events = tenant["events"].setdefault(user["id"], {})
            event = events.get(event_id)
        if event is None:
            return graph_error(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if method == "GET":
            odata.refuse_unknown(query, {"$select", "$expand"})
            fields = self.parse_select(query)
            expand_id = odata.expand_extended_property(query)
            tz_name = self.preferred_zone(self.prefer(headers))
            return 200, {}, calendar.render(event, fields, tz_name, expand_id)
        if method == "PATCH":
            if not isinstance(body, dict):
                raise GraphError(400, "UnableToDeserializePostBody", "were unable to deserialize")
            changes = copy.deepcopy(body)
            extended = changes.pop("singleValueExtendedProperties", None)
            with self.lock:
                changed = {**copy.deepcopy(event), **changes}
                calendar.check_event(changed)  # a refused change leaves the event as it was
                if isinstance(extended, list):
                    changed["singleValueExtendedProperties"] = calendar.merge_extended(
                        event.get("singleValueExtendedProperties"), extended
                    )
                changed["changeKey"] = secrets.token_hex(8)
                changed["lastModifiedDateTime"] = iso(now_utc())
                event.clear()
                event.update(changed)
            self.notify(tenant, user, event_id, "updated")
            self.save()
            return 200, {}, calendar.render(event, calendar.DEFAULT_PROPERTIES, "UTC", None)
        if method == "DELETE":
            with self.lock:
                events.pop(event_id, None)
            self.notify(tenant, user, event_id, "deleted")
            self.save()
            return 204, {}, None
        return graph_error(405, "BadRequest", "Method not allowed.")

    # ----- subscriptions and deliveries

    def subscriptions_api(self, tenant, method, rest, body):
        if not rest and method == "GET":
            with self.lock:
                mine = [s for s in self.subscriptions.values() if s["tenantId"] == tenant["id"]]
            return 200, {}, {"value": [self.public_subscription(s) for s in mine]}
        if not rest and method == "POST":
            return self.create_subscription(tenant, body)
        with self.lock:
            subscription = self.subscriptions.get(rest[0])
            if subscription and self._expired(subscription):
                del self.subscriptions[rest[0]]
                subscription = None
        if subscription is None or subscription["tenantId"] != tenant["id"]:
            return graph_error(
                404, "ResourceNotFound", f"The object was not found. Subscription Id '{rest[0]}'."
            )
        if len(rest) == 1 and method == "GET":
            return 200, {}, self.public_subscription(subscription)
        if len(rest) == 1 and method == "PATCH":
            expiry, error = self._expiry(body)
            if error:
                return error
            with self.lock:
                subscription["expirationDateTime"] = iso(expiry)
            self.save()
            return 200, {}, self.public_subscription(subscription)
        if len(rest) == 1 and method == "DELETE":
            with self.lock:
                self.subscriptions.pop(subscription["id"], None)
            self.save()
            return 204, {}, None
        if rest[1:] == ["reauthorize"] and method == "POST":
            with self.lock:
                subscription["reauthorized"] = subscription.get("reauthorized", 0) + 1
            return 204, {}, None
        return graph_error(405, "BadRequest", "Method not allowed.")

    @staticmethod
    def _expired(subscription) -> bool:
        expiry = datetime.fromisoformat(subscription["expirationDateTime"].replace("Z", "+00:00"))
        return expiry < now_utc()

    @staticmethod
    def _expiry(body) -> tuple[datetime | None, tuple | None]:
        try:
            expiry = datetime.fromisoformat(body["expirationDateTime"].replace("Z", "+00:00"))
        except (KeyError, ValueError, AttributeError):
            return None, graph_error(400, "ExtensionError", "expirationDateTime is invalid.")
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        if expiry > now_utc() + timedelta(minutes=SUBSCRIPTION_MAX_MINUTES):
            return None, graph_error(
                400,
                "ExtensionError",
                "Subscription expiration can only be 4230 minutes in the future.",
            )
        if expiry <= now_utc():
            return None, graph_error(
                400, "ExtensionError", "Subscription expiration must be in the future."
            )
        return expiry, None

    def public_subscription(self, subscription) -> dict:
        keys = (
            "id",
            "resource",
            "applicationId",
            "changeType",
            "clientState",
            "notificationUrl",
            "lifecycleNotificationUrl",
            "expirationDateTime",
            "creatorId",
            "latestSupportedTlsVersion",
            "notificationUrlAppId",
            "includeResourceData",
        )
        return {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#subscriptions/$entity",
            **{k: subscription.get(k) for k in keys},
        }

    def create_subscription(self, tenant, body):
        resource = body.get("resource", "")
        match = re.fullmatch(r"/?users/([^/]+)/events", str(resource), flags=re.IGNORECASE)
        if not match:
            return graph_error(
                400,
                "ExtensionError",
                f"Operation: Create; Exception: [Status Code: BadRequest; "
                f"Reason: Unsupported resource '{resource}']",
            )
        user = self.find_user(tenant, unquote(match.group(1)))
        if user is None:
            return graph_error(
                404,
                "ExtensionError",
                "Operation: Create; Exception: [Status Code: NotFound; Reason: "
                "The requested user is invalid.]",
            )
        change_types = set(body.get("changeType", "").split(","))
        if not change_types or not change_types <= {"created", "updated", "deleted"}:
            return graph_error(400, "InvalidRequest", "Invalid changeType.")
        if len(body.get("clientState") or "") > 128:
            return graph_error(400, "InvalidRequest", "clientState exceeds 128 characters.")
        expiry, error = self._expiry(body)
        if error:
            return error
        for url_key in ("notificationUrl", "lifecycleNotificationUrl"):
            url = body.get(url_key)
            if url_key == "notificationUrl" and not url:
                return graph_error(400, "InvalidRequest", "notificationUrl is required.")
            if url and not self.acceptable_url(str(url)):
                scheme = urlsplit(str(url)).scheme or "''"
                name = url_key[0].upper() + url_key[1:]
                return graph_error(
                    400, "InvalidRequest", f"{name} scheme='{scheme}' is not supported."
                )
            if url and not self.validate_endpoint(url):
                return graph_error(
                    400,
                    "ValidationError",
                    "Subscription validation request failed. Notification endpoint must "
                    "respond with 200 OK to validation request.",
                )
        subscription = {
            "id": str(demo.user_id(secrets.token_hex(8))),
            "resource": resource,
            "applicationId": self.client_id,
            "changeType": body["changeType"],
            "clientState": body.get("clientState"),
            "notificationUrl": body["notificationUrl"],
            "lifecycleNotificationUrl": body.get("lifecycleNotificationUrl"),
            "expirationDateTime": iso(expiry),
            "creatorId": self.client_id,
            "latestSupportedTlsVersion": "v1_2",
            "notificationUrlAppId": None,
            "includeResourceData": False,
            "tenantId": tenant["id"],
            "userId": user["id"],
        }
        with self.lock:
            self.subscriptions[subscription["id"]] = subscription
        self.save()
        return 201, {}, self.public_subscription(subscription)

    def acceptable_url(self, url: str) -> bool:
        """https only, as Graph; `allow_http_loopback` (make run) lets http://127.0.0.1 in."""
        split = urlsplit(url)
        if split.scheme == "https" and split.hostname:
            return True
        if split.scheme != "http" or not self.allow_http_loopback:
            return False
        try:
            return split.hostname == "localhost" or ipaddress.ip_address(split.hostname).is_loopback
        except ValueError:
            return False

    def validate_endpoint(self, url: str) -> bool:
        """Graph's handshake: POST ?validationToken=…, expect 200 text/plain echoing it in 10 s."""
        token = f"Validation: Testing client application reachability {secrets.token_hex(6)}"
        separator = "&" if "?" in url else "?"
        request = urllib.request.Request(
            f"{url}{separator}validationToken={quote(token)}",
            data=b"",
            method="POST",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        entry = {"kind": "validation", "url": url, "time": time.time()}
        try:
            with self._opener.open(request, timeout=10) as response:
                text = response.read().decode()
                entry.update(
                    status=response.status, content_type=response.headers.get("Content-Type", "")
                )
                ok = (
                    response.status == 200
                    and text == token
                    and entry["content_type"].startswith("text/plain")
                )
        except (urllib.error.URLError, OSError) as exc:
            entry.update(status=getattr(exc, "code", None), error=str(exc))
            ok = False
        entry["ok"] = ok
        with self.lock:
            self.deliveries.append(entry)
        return ok

    def notify(self, tenant, user, event_id, change_type):
        """Queue change notifications for every subscription on this mailbox's events."""
        with self.lock:
            targets = [
                s
                for s in self.subscriptions.values()
                if s["tenantId"] == tenant["id"]
                and s["userId"] == user["id"]
                and change_type in s["changeType"].split(",")
                and not self._expired(s)
            ]
        for subscription in targets:
            notification = {
                "id": delivery.notification_id(),
                "subscriptionId": subscription["id"],
                "subscriptionExpirationDateTime": subscription["expirationDateTime"],
                "changeType": change_type,
                "resource": f"Users/{user['id']}/Events/{event_id}",
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.Event",
                    "@odata.id": f"Users/{user['id']}/Events/{event_id}",
                    "@odata.etag": 'W/"' + secrets.token_hex(8) + '"',
                    "id": event_id,
                },
                "clientState": subscription["clientState"],
                "tenantId": tenant["id"],
            }
            self.deliverer.enqueue("notification", subscription["notificationUrl"], notification)

    def send_lifecycle(self, subscription_id: str, event: str) -> bool:
        with self.lock:
            subscription = self.subscriptions.get(subscription_id)
            if subscription is None or not subscription.get("lifecycleNotificationUrl"):
                return False
            if event == "subscriptionRemoved":
                self.subscriptions.pop(subscription_id, None)
        lifecycle = {
            "subscriptionId": subscription["id"],
            "subscriptionExpirationDateTime": subscription["expirationDateTime"],
            "tenantId": subscription["tenantId"],
            "clientState": subscription["clientState"],
            "lifecycleEvent": event,
        }
        self.deliverer.enqueue("lifecycle", subscription["lifecycleNotificationUrl"], lifecycle)
        self.save()
        return True

    # ----- $batch

    def batch(self, tenant, body, *, delay: float) -> tuple[int, dict, dict]:
        try:
            steps = batch.check(body)
        except GraphError as refused:
            return refused.answer()
        if delay:
            time.sleep(delay)  # the steps run in parallel at Graph: one round trip's latency

        def run_step(method, path, query, headers, step_body):
            return self.graph(tenant, method, path, query, headers, step_body)

        return 200, {}, {"responses": batch.run(steps, run_step, self.record)}


class Handler(signin.SignInPages, addin.AddinEndpoints, TLSHandler):
    server_version = "M365Sandbox/1.0"
    sandbox: Sandbox  # set on the subclass the server makes

    # ----- plumbing

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body=None, headers=None, content_type="application/json"):
        if body is None:
            payload = b""
        elif isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if payload:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _json(self, raw: bytes):
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_OPTIONS(self):
        # Only the add-in endpoints answer a CORS preflight; nothing else is cross-origin.
        if cors.is_addin_path(urlsplit(self.path).path):
            return self._dispatch("OPTIONS")
        self._body()
        return self._send(405, {"error": "method not allowed"})

    def _dispatch(self, method):
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        raw = self._body()
        path = split.path
        try:
            if cors.is_addin_path(path):
                return self._addin(method, path[len(cors.ADDIN_PREFIX) :].strip("/"), query, raw)
            if path.startswith("/_sandbox/"):
                try:
                    return self._control(method, path[len("/_sandbox/") :].strip("/"), query, raw)
                except GraphError as refused:  # an event Graph would refuse, made in "Outlook"
                    status, headers, body = refused.answer()
                    return self._send(status, body, headers)
            if path.startswith("/v1.0/"):
                return self._graph(method, path[5:], query, raw)
            return self._login(method, path, query, raw)
        except BrokenPipeError:
            return None

    # ----- sign-in endpoints

    def _login(self, method, path, query, raw):
        parts = [p for p in path.split("/") if p]
        sandbox = self.sandbox
        entry = {"method": method, "path": path, "query": query, "status": None, "login": True}
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            entry["status"] = 200
            sandbox.record(entry)
            return self._send(200, sandbox.openid_configuration(parts[0]))
        if parts[1:] == ["oauth2", "v2.0", "token"] and method == "POST":
            form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
            authorization = self.headers.get("Authorization")
            status, body = sandbox.token(parts[0], form, authorization)
            entry.update(status=status, client_id=form.get("client_id"))
            if form.get("grant_type") != "client_credentials":
                # Never the secret, the code or the verifier: a code's fingerprint at most.
                entry["grant_type"] = form.get("grant_type")
                basic_id = signin.basic_credentials(authorization)[0]
                entry["client_id"] = basic_id or entry["client_id"]
                if form.get("code"):
                    entry["code"] = signin.fingerprint(form["code"])
                if status != 200:
                    entry["error"] = body.get("error")
                    entry["error_codes"] = body.get("error_codes")
            sandbox.record(entry)
            return self._send(status, body, {"Cache-Control": "no-store"})
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "authorize"] and method == "GET":
            return self._authorize(parts[0], query, entry)
        if len(parts) == 2 and parts[1] == "login" and method == "POST":
            form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
            return self._signin_answer(parts[0], form, entry)
        if len(parts) == 4 and parts[1:] == ["discovery", "v2.0", "keys"] and method == "GET":
            sandbox.record(dict(entry, status=200))
            return self._send(200, sandbox.signin.jwks(parts[0]))
        if parts[1:] in (["v2.0", "adminconsent"], ["adminconsent"]) and method == "GET":
            sandbox.record(dict(entry, status=200))
            return self._admin_consent(parts[0], query)
        if path == "/consent" and method == "POST":
            form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
            return self._consent_answer(form)
        self._send(404, {"error": "not_found"})

    def _redirect(self, url):
        self._send(302, b"", {"Location": url})

    def _consent_redirect(self, redirect_uri, state, params):
        params = dict(params)
        if state is not None:
            params["state"] = state
        separator = "&" if "?" in redirect_uri else "?"
        return self._redirect(f"{redirect_uri}{separator}{urlencode(params)}")

    def _admin_consent(self, tenant_key, query):
        sandbox = self.sandbox
        redirect_uri, state = query.get("redirect_uri"), query.get("state")
        if query.get("client_id") != sandbox.client_id or not redirect_uri:
            return self._page(
                "AADSTS700016",
                f"Application with identifier '{html.escape(query.get('client_id', ''))}' was "
                "not found in the directory.",
            )
        knob = dict(sandbox.knobs.get("consent") or {"mode": "form"})
        mode = knob.get("mode", "form")
        tenant_id = knob.get("tenant") or (
            tenant_key if tenant_key in sandbox.tenants else demo.DEMO_TENANT_ID
        )
        if mode == "accept":
            return self._grant(tenant_id, redirect_uri, state)
        if mode == "decline":
            return self._consent_redirect(
                redirect_uri,
                state,
                {
                    "error": "access_denied",
                    "error_description": "AADSTS65004: User declined to consent to access the app.",
                },
            )
        if mode == "error":
            return self._consent_redirect(
                redirect_uri,
                state,
                {
                    "error": knob.get("error", "consent_required"),
                    "error_description": knob.get(
                        "error_description",
                        "AADSTS90094: An administrator of Demo AB has not granted consent.",
                    ),
                },
            )
        if mode == "no_return":
            return self._need_admin_approval()
        options = "".join(
            f'<label><input type="radio" name="tenant" value="{html.escape(t["id"])}"'
            f"{' checked' if t['id'] == tenant_id else ''}> {html.escape(t['name'])}</label><br>"
            for t in sandbox.tenants.values()
        )
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(v)}">'
            for k, v in (("redirect_uri", redirect_uri), ("state", state or ""))
        )
        body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Permissions requested</title></head><body style="font-family:sans-serif;max-width:40em">
<h1>Permissions requested — Accept for your organization</h1>
<p><b id="app-name">{html.escape(sandbox.app_name)}</b> (sandbox) wants to:
<b>Read calendars in all mailboxes</b> (Calendars.Read, application permission) and
<b>Read all group memberships</b> (GroupMember.Read.All, application permission).</p>
<p>You are signed in as a Global Administrator of the organization below.</p>
<form method="post" action="/consent">{hidden}{options}
<p><button name="answer" value="accept" id="accept">Accept</button>
<button name="answer" value="decline" id="cancel">Cancel</button>
<button name="answer" value="no_admin" id="no-admin">Sign in as a user without the role</button>
</p></form></body></html>"""
        return self._send(200, body, content_type="text/html; charset=utf-8")

    def _consent_answer(self, form):
        redirect_uri, state = form.get("redirect_uri", ""), form.get("state") or None
        answer = form.get("answer")
        if answer == "accept":
            return self._grant(form.get("tenant") or demo.DEMO_TENANT_ID, redirect_uri, state)
        if answer == "no_admin":
            return self._need_admin_approval()
        return self._consent_redirect(
            redirect_uri,
            state,
            {
                "error": "access_denied",
                "error_description": "AADSTS65004: User declined to consent to access the app.",
            },
        )

    def _grant(self, tenant_id, redirect_uri, state):
        sandbox = self.sandbox
        if tenant_id in sandbox.tenants:
            sandbox.set_consent(tenant_id, True)
        return self._consent_redirect(
            redirect_uri,
            state,
            {
                "admin_consent": "True",
                "tenant": tenant_id,
                "scope": "https://graph.microsoft.com/.default",
            },
        )

    def _need_admin_approval(self):
        return self._page(
            "Need admin approval",
            f"{html.escape(self.sandbox.app_name)} needs permission to access resources in "
            "your organization that only an admin can grant. AADSTS90094. Please ask an admin "
            "to grant permission to this app before you can use it.",
        )

    def _page(self, title, text):
        body = (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"</head><body><h1>{title}</h1><p>{text}</p></body></html>"
        )
        return self._send(200, body, content_type="text/html; charset=utf-8")

    # ----- Graph endpoints

    def _graph(self, method, path, query, raw):
        sandbox = self.sandbox
        headers = {k.lower(): v for k, v in self.headers.items()}
        request_id, client_request_id = errors.request_ids(headers.get("client-request-id"))
        entry = {
            "method": method,
            "path": "/v1.0" + path,
            "query": query,
            "prefer": headers.get("prefer", ""),
            # As sent (percent-encoding kept) and what a client's library adds: enough to replay
            # a recorded client (tests/data/msgraph-sdk-requests.json). Never the token.
            "raw_path": self.path,
            "headers": {k: headers[k] for k in RECORDED_HEADERS if k in headers},
        }
        if method in ("POST", "PATCH") and len(raw) <= 16_384:
            entry["body"] = self._json(raw)
        try:
            status, out_headers, out_body = self._graph_answer(method, path, query, raw, headers)
        except Exception:  # noqa: BLE001 - Graph answers, it never drops the connection
            sandbox.crashed(f"{method} /v1.0{path}", traceback.format_exc())
            status, out_headers, out_body = graph_error(
                500, "InternalServerError", "The sandbox failed to answer this request."
            )
        if path == "/$batch" and method == "POST":
            body = self._json(raw)
            requests_ = body.get("requests") if isinstance(body, dict) else None
            entry["steps"] = len(requests_) if isinstance(requests_, list) else 0
            if isinstance(out_body, dict):
                for answer in out_body.get("responses", []):
                    errors.stamp(answer.get("body"), request_id, client_request_id)
        entry["status"] = status
        sandbox.record(entry)
        errors.stamp(out_body, request_id, client_request_id)
        out_headers = {**out_headers, **errors.id_headers(request_id, client_request_id)}
        return self._send(status, out_body, out_headers)

    def _graph_answer(self, method, path, query, raw, headers):
        sandbox = self.sandbox
        delay = sandbox.knobs.get("latency_ms", 0) / 1000
        tenant, error = sandbox.authenticate(headers.get("authorization", ""))
        if error:
            return error
        body = self._json(raw)
        if raw and body is None and method in ("POST", "PATCH"):
            return graph_error(400, "BadRequest", "Unable to read JSON request payload.")
        if path == "/$batch" and method == "POST":
            return sandbox.throttled(path) or sandbox.batch(tenant, body, delay=delay)
        return sandbox.graph(tenant, method, path, query, headers, body, delay=delay)

    # ----- sandbox-only control plane

    def _control(self, method, path, query, raw):
        sandbox = self.sandbox
        body = self._json(raw) or {}
        parts = path.split("/") if path else []
        if parts == ["health"]:
            return self._send(200, {"ok": True})
        if parts == ["requests"]:
            if method == "DELETE":
                with sandbox.lock:
                    sandbox.log.clear()
                return self._send(204)
            since = int(query.get("since", "0"))
            with sandbox.lock:
                entries = [e for e in sandbox.log if e["seq"] > since]
            return self._send(200, {"value": entries})
        if parts == ["deliveries"]:
            if method == "DELETE":
                sandbox.deliverer.clear()
                with sandbox.lock:
                    sandbox.deliveries.clear()
                return self._send(204)
            pending, endpoints = sandbox.deliverer.pending(), sandbox.deliverer.endpoint_states()
            with sandbox.lock:
                value = list(sandbox.deliveries)
            return self._send(200, {"value": value, "pending": pending, "endpoints": endpoints})
        if parts == ["crashes"]:
            with sandbox.lock:
                if method == "DELETE":
                    sandbox.crashes.clear()
                return self._send(200, {"value": list(sandbox.crashes)})
        if parts == ["knobs"]:
            if method == "POST":
                with sandbox.lock:
                    sandbox.knobs.update(body)
            elif method == "DELETE":
                with sandbox.lock:
                    sandbox.reset_knobs()
            CLOCK["offset_seconds"] = float(sandbox.knobs.get("clock_offset_seconds") or 0)
            return self._send(200, sandbox.knobs)
        if parts == ["redirect-uris"]:
            uris = body.get("redirect_uris", [])
            if method == "POST":
                if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
                    return self._send(400, {"error": "redirect_uris: a list of URIs"})
                sandbox.signin.register(uris)
            elif method == "DELETE":
                sandbox.signin.reset_redirect_uris()
            return self._send(200, {"redirect_uris": sandbox.signin.register(())})
        if parts == ["tenants"] and method == "POST":
            tenant = sandbox.add_tenant(
                body.get("id"),
                body.get("name", "Tenant"),
                body.get("users", []),
                body.get("consented", True),
            )
            generate = body.get("generate") or {}
            for n in range(int(generate.get("users", 0))):
                sandbox.add_user(
                    tenant["id"],
                    f"user{n:05d}@{generate.get('domain', 'bench.se')}",
                    f"User {n}",
                    fortnight=bool(generate.get("fortnight", True)),
                    index=n,
                )
            sandbox.save()
            return self._send(201, {"id": tenant["id"], "users": len(tenant["users"])})
        if parts == ["tenants"] and method == "GET":
            return self._send(
                200,
                {
                    "value": [
                        {
                            "id": t["id"],
                            "name": t["name"],
                            "consented": t["consented"],
                            "users": list(t["users"].values()),
                            "roles": t.get("roles", {}),
                        }
                        for t in sandbox.tenants.values()
                    ]
                },
            )
        if len(parts) >= 2 and parts[0] == "tenants":
            tenant = sandbox.tenants.get(parts[1])
            if tenant is None:
                return self._send(404, {"error": "no such tenant"})
            return self._control_tenant(method, tenant, parts[2:], body)
        if parts == ["subscriptions"]:
            with sandbox.lock:
                return self._send(200, {"value": list(sandbox.subscriptions.values())})
        if len(parts) == 3 and parts[0] == "subscriptions" and parts[2] == "lifecycle":
            sent = sandbox.send_lifecycle(parts[1], body.get("event", "reauthorizationRequired"))
            return self._send(202 if sent else 404, {"sent": sent})
        self._send(404, {"error": "unknown sandbox endpoint"})

    def _control_tenant(self, method, tenant, rest, body):
        sandbox = self.sandbox
        if rest == ["revoke"] and method == "POST":
            sandbox.set_consent(tenant["id"], False, code=str(body.get("code", "700016")))
            return self._send(200, {"consented": False})
        if rest == ["consent"] and method == "POST":
            sandbox.set_consent(tenant["id"], True)
            return self._send(200, {"consented": True})
        if rest == ["permissions"] and method == "POST":
            tenant["permissions_removed"] = bool(body.get("removed"))
            return self._send(200, {"permissions_removed": tenant["permissions_removed"]})
        if rest == ["app-roles"] and method == "POST":
            # The application permissions the tenant consented to (None: all the app asks for).
            roles = body.get("roles")
            with sandbox.lock:
                tenant["app_roles"] = None if roles is None else [str(r) for r in roles]
            sandbox.save()
            return self._send(200, {"app_roles": tenant["app_roles"]})
        if rest and rest[0] == "groups":
            return self._control_groups(method, tenant, rest[1:], body)
        if rest == ["users"] and method == "POST":
            user = sandbox.add_user(
                tenant["id"],
                body["mail"],
                body.get("displayName", ""),
                fortnight=bool(body.get("fortnight")),
                wids=body.get("wids"),
            )
            sandbox.save()
            return self._send(201, user)
        # Event changes on behalf of the mailbox owner (as if made in Outlook): notify too.
        if len(rest) >= 3 and rest[0] == "users" and rest[2] == "events":
            user = sandbox.find_user(tenant, rest[1])
            if user is None:
                return self._send(404, {"error": "no such user"})
            if len(rest) == 3 and method == "GET":
                with sandbox.lock:
                    events = list(tenant["events"].get(user["id"], {}).values())
                return self._send(200, {"value": events})
            if len(rest) == 3 and method == "POST":
                status, _, out = sandbox.create_event(tenant, user, body)
                return self._send(status, out)
            if len(rest) == 4:
                status, _, out = sandbox.event_item(tenant, user, rest[3], method, {}, {}, body)
                return self._send(status, out)
        self._send(404, {"error": "unknown sandbox endpoint"})

    def _control_groups(self, method, tenant, rest, body):
        """Group changes as if made in Entra ID; each one shows in the next delta round."""
        sandbox = self.sandbox
        with sandbox.lock:
            found = groups.directory(tenant)["groups"]
            if rest == [] and method == "GET":
                return self._send(200, {"value": [groups.summary(g) for g in found.values()]})
            if rest == [] and method == "POST":
                members = [self._member(tenant, key) for key in body.get("members", [])]
                members += [self._member(tenant, key, "group") for key in body.get("groups", [])]
                if None in members:
                    return self._send(404, {"error": "no such user or group"})
                group = groups.create_group(
                    tenant,
                    str(body.get("displayName", "Group")),
                    group_id=body.get("id"),
                    description=body.get("description"),
                    created=iso(now_utc()),
                    members=members,
                )
                answer = (201, groups.summary(group))
            elif rest == ["delta-reset"] and method == "POST":
                groups.reset_delta(tenant)
                answer = (200, {"reset": True})
            elif len(rest) == 1 and method == "DELETE":
                if not groups.delete_group(tenant, rest[0]):
                    return self._send(404, {"error": "no such group"})
                answer = (204, None)
            elif len(rest) >= 2 and rest[1] == "members" and rest[0] in found:
                keys = body.get("members", []) if len(rest) == 2 else [rest[2]]
                members = [self._member(tenant, key) for key in keys]
                if None in members:
                    return self._send(404, {"error": "no such user or group"})
                if method == "POST" and len(rest) == 2:
                    changed = [groups.add_member(tenant, rest[0], *m) for m in members]
                elif method == "DELETE":
                    changed = [groups.remove_member(tenant, rest[0], m[0]) for m in members]
                else:
                    return self._send(404, {"error": "unknown sandbox endpoint"})
                answer = (200, {"changed": sum(changed), **groups.summary(found[rest[0]])})
            else:
                return self._send(404, {"error": "unknown sandbox endpoint"})
        sandbox.save()
        return self._send(*answer)

    def _member(self, tenant, key, kind=None) -> tuple[str, str] | None:
        """A user (id, mail or UPN) or a group (id or display name) of the tenant."""
        key = str(key)
        user = None if kind == "group" else self.sandbox.find_user(tenant, key)
        if user is not None:
            return user["id"], "user"
        for group in groups.directory(tenant)["groups"].values():
            if key.lower() in (group["id"], group["displayName"].lower()):
                return group["id"], "group"
        return None


class M365Server(TLSServer):
    """The HTTPS server around a Sandbox; `start()` runs it in a background thread."""

    def __init__(
        self,
        host="127.0.0.1",
        port=8011,
        *,
        ca_file=None,
        state_file=None,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        with_demo=True,
        addin_id=demo.DEFAULT_ADDIN_ID,
        ca=None,
        redirect_uris=(),
        app_name=DEFAULT_APP_NAME,
        allow_http_loopback=False,
        trust_ca_files=(),
    ):
        self.sandbox = Sandbox(
            client_id=client_id,
            client_secret=client_secret,
            state_file=state_file,
            with_demo=with_demo,
            addin_id=addin_id,
            redirect_uris=redirect_uris,
            app_name=app_name,
            allow_http_loopback=allow_http_loopback,
        )
        handler = type("BoundHandler", (Handler,), {"sandbox": self.sandbox})
        super().__init__(
            handler, host, port, ca=ca, ca_file=ca_file, ca_name="MSS M365 sandbox test CA"
        )
        self.sandbox.base_url = self.base_url
        # Its own test CA counts as public: tests put the product behind a certificate from it.
        self.sandbox.trust(self.ca.cert_pem.bytes().decode())
        for extra in trust_ca_files:
            self.sandbox.trust(Path(extra).read_text())

    def stop(self):
        self.sandbox.close()
        super().stop()
