"""The Outlook add-in's side of Microsoft 365: what Outlook gives the task pane, for the tests and
the demo's Office.js stub (sandbox/addin/office_stub.js).

`POST /_sandbox/addin/token` answers as nested app authentication does (MSAL's
`createNestablePublicClientApplication(...).acquireTokenSilent`): an Entra access token for the
product's API (aud = the app's client id, scp from the scope asked for), an ID token and the
account, signed with the key the tenant publishes at `/{tid}/discovery/v2.0/keys`. The
`addin_token` knob spoils the access token: expired, wrong_audience, wrong_issuer, unknown_key.

`POST /_sandbox/addin/custom-properties` is Office's `customProperties.set` + `saveAsync`: the
JSON string in the single-value extended property `String {PublicStrings} Name cecp-<add-in id>`
of the event (or of one occurrence, which makes it an exception), as an edit in Outlook would:
an "updated" change notification. `GET` reads it back (`loadCustomPropertiesAsync`).

`GET /_sandbox/addin/office.js` serves the Office.js stub. All answer cross-origin.
"""

import hashlib
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from joserfc import jwt

from .. import cors
from ..keys import b64url
from . import addin_demo, calendar, demo
from .signin import token_error

OFFICE_STUB = Path(__file__).resolve().parents[1] / "addin" / "office_stub.js"
TOKEN_LIFETIME = 3600
SCOPE_NAME = "access_as_user"
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
# The audience of a wrong_audience token unless the knob names one: Microsoft Graph's app id (a
# token for another API). A wrong_issuer token names Entra's v1.0 issuer, sts.windows.net.
OTHER_AUDIENCE = "00000003-0000-0000-c000-000000000000"
NO_SPOILING = {
    "expired": False,
    "wrong_audience": None,
    "wrong_issuer": False,
    "unknown_key": False,
}


def default_scope(client_id: str) -> str:
    return f"api://{client_id}/{SCOPE_NAME}"


def resource_scope(asked, client_id: str) -> str:
    """The scope the access token is for: what was asked (a string or a list, as MSAL passes
    it) without the OpenID Connect scopes, which go into the ID token, not the access token."""
    scopes = asked.split() if isinstance(asked, str) else list(asked or ())
    kept = [s for s in scopes if isinstance(s, str) and s not in OIDC_SCOPES]
    return " ".join(kept) or default_scope(client_id)


def _user(sandbox, mailbox, tenant_id) -> tuple[dict | None, dict | None, tuple | None]:
    """The tenant (the one asked for, or the mailbox's home) and the user; else an Entra error."""
    if tenant_id:
        tenant = sandbox.tenants.get(tenant_id)
        if tenant is None:
            return (
                None,
                None,
                token_error(
                    400, "invalid_request", "90002", f"AADSTS90002: Tenant '{tenant_id}' not found."
                ),
            )
        user = sandbox.find_user(tenant, mailbox)
    else:
        tenant, user = sandbox.tenant_of_user(mailbox)
    if user is None:
        return (
            None,
            None,
            token_error(
                400,
                "invalid_grant",
                "50034",
                f"AADSTS50034: The user account {mailbox} does not exist in the directory.",
            ),
        )
    return tenant, user, None


def _sub(client_id: str, user: dict) -> str:
    # Pairwise, as in the sign-in's ID tokens: the same person has another sub in another app.
    return b64url(hashlib.sha256(f"{client_id}/{user['id']}".encode()).digest())


def issue_tokens(sandbox, body: dict) -> tuple[int, dict]:
    """The tokens and account NAA hands the task pane for `mailbox` (see the module doc)."""
    mailbox = body.get("mailbox")
    if not isinstance(mailbox, str) or not mailbox:
        return 400, {"error": "invalid_request", "error_description": "mailbox is required"}
    tenant, user, problem = _user(sandbox, mailbox, body.get("tenant"))
    if problem:
        return problem
    client_id = body.get("client_id") or sandbox.client_id
    if client_id != sandbox.client_id:
        return token_error(
            400,
            "unauthorized_client",
            "700016",
            f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
            f"directory '{tenant['id']}'.",
        )
    if not tenant["consented"]:
        return token_error(
            400,
            "invalid_grant",
            "65001",
            f"AADSTS65001: The user or administrator has not consented to use the application "
            f"with ID '{client_id}'.",
        )
    scope = resource_scope(body.get("scope"), client_id)
    knob = {**NO_SPOILING, **(sandbox.knobs.get("addin_token") or {})}
    now = int(time.time())
    issued = now - 2 * TOKEN_LIFETIME if knob["expired"] else now
    tid = tenant["id"]
    issuer = f"{sandbox.base_url}/{tid}/v2.0"
    person = {
        "name": user["displayName"],
        "oid": user["id"],
        "preferred_username": user["userPrincipalName"],
        "sub": _sub(client_id, user),
        "tid": tid,
        "ver": "2.0",
    }
    wrong_audience = knob["wrong_audience"]
    access_claims = {
        **person,
        "aud": (wrong_audience if isinstance(wrong_audience, str) else OTHER_AUDIENCE)
        if wrong_audience
        else client_id,
        "iss": f"https://sts.windows.net/{tid}/" if knob["wrong_issuer"] else issuer,
        "iat": issued,
        "nbf": issued,
        "exp": issued + TOKEN_LIFETIME,
        "azp": client_id,
        "azpacr": "0",  # a public client: the pane has no secret
        # The scope's permission names, as Entra puts them in scp ("access_as_user").
        "scp": " ".join(part.rsplit("/", 1)[-1] for part in scope.split()),
        "uti": b64url(secrets.token_bytes(16)),
    }
    signing = sandbox.signin.key("signing")
    access_key = sandbox.signin.key("rogue") if knob["unknown_key"] else signing
    id_claims = {
        **person,
        "aud": client_id,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME,
        "uti": b64url(secrets.token_bytes(16)),
    }
    return 200, {
        "token_type": "Bearer",
        "access_token": jwt.encode(
            {"typ": "JWT", "alg": "RS256", "kid": access_key["kid"]},
            access_claims,
            access_key["jwk"],
        ),
        "id_token": jwt.encode(
            {"typ": "JWT", "alg": "RS256", "kid": signing["kid"], "x5t": signing["x5t"]},
            id_claims,
            signing["jwk"],
        ),
        "expires_in": TOKEN_LIFETIME - 1,
        "scope": scope,
        "account": {
            "homeAccountId": f"{user['id']}.{tid}",
            "environment": urlsplit(sandbox.base_url).netloc,
            "tenantId": tid,
            "username": user["userPrincipalName"],
            "localAccountId": user["id"],
            "name": user["displayName"],
        },
    }


# ----- custom properties


def find_event(tenant: dict, user: dict, event_id: str) -> tuple[dict | None, str | None]:
    """The stored event an id names and, for an occurrence (`<master id>-YYYYMMDD`, as the
    calendar view names them), its date: the key of the master's `exceptions`."""
    events = tenant["events"].get(user["id"], {})
    if event_id in events:
        return events[event_id], None
    master_id, _, day = event_id.rpartition("-")
    master = events.get(master_id)
    if not master or not master.get("recurrence"):
        return None, None
    try:
        when = datetime.strptime(day, "%Y%m%d").date()
    except ValueError:
        return None, None
    if when not in calendar.occurrence_dates(master, when):
        return None, None
    if (master.get("exceptions", {}).get(when.isoformat()) or {}).get("deleted"):
        return None, None
    return master, when.isoformat()


def stored_properties(event: dict, day: str | None) -> list[dict]:
    """The extended properties of the event, or of its occurrence on `day`."""
    if day is not None:
        override = event.get("exceptions", {}).get(day) or {}
        if "singleValueExtendedProperties" in override:
            return override["singleValueExtendedProperties"]
    return event.get("singleValueExtendedProperties") or []


def _target(sandbox, fields: dict) -> tuple[tuple | None, tuple | None]:
    """((tenant, user, event, day, property id), None) or (None, (status, error))."""
    mailbox, event_id = fields.get("mailbox"), fields.get("event_id")
    if not isinstance(mailbox, str) or not isinstance(event_id, str):
        return None, (400, {"error": "mailbox and event_id are required"})
    tenant, user, problem = _user(sandbox, mailbox, fields.get("tenant"))
    if problem:
        return None, (404, {"error": "no such mailbox"})
    with sandbox.lock:
        event, day = find_event(tenant, user, event_id)
    if event is None:
        return None, (404, {"error": "no such event"})
    property_id = demo.addin_property_id(fields.get("addin_id") or sandbox.addin_id)
    return (tenant, user, event, day, property_id), None


def read_custom_properties(sandbox, query: dict) -> tuple[int, dict]:
    target, error = _target(sandbox, query)
    if error:
        return error
    _tenant, _user_, event, day, property_id = target
    with sandbox.lock:
        found = [p for p in stored_properties(event, day) if p["id"].lower() == property_id.lower()]
    try:
        properties = json.loads(found[0]["value"]) if found else {}
    except ValueError:
        properties = {}
    return 200, {"properties": properties if isinstance(properties, dict) else {}}


def save_custom_properties(sandbox, body: dict) -> tuple[int, dict]:
    properties = body.get("properties")
    if not isinstance(properties, dict):
        return 400, {"error": "properties must be a JSON object"}
    target, error = _target(sandbox, body)
    if error:
        return error
    tenant, user, event, day, property_id = target
    # Office writes JSON.stringify's compact form.
    saved = {"id": property_id, "value": json.dumps(properties, separators=(",", ":"))}
    with sandbox.lock:
        holder = event if day is None else event.setdefault("exceptions", {}).setdefault(day, {})
        holder["singleValueExtendedProperties"] = calendar.merge_extended(
            stored_properties(event, day), [saved]
        )
        holder["changeKey"] = secrets.token_hex(8)
        holder["lastModifiedDateTime"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    sandbox.notify(tenant, user, body["event_id"], "updated")
    sandbox.save()
    return 200, {"properties": properties}


class AddinEndpoints:
    """The HTTP side, mixed into server.Handler (it brings sandbox, _send and _json)."""

    def _addin(self, method, path, query, raw):
        if method == "OPTIONS":
            return self._send(204, None, cors.PREFLIGHT)
        headers = {**cors.ALLOW, "Cache-Control": "no-store"}
        if path == "office.js" and method == "GET":
            if not OFFICE_STUB.is_file():
                return self._send(
                    404, {"error": "sandbox/addin/office_stub.js is missing"}, headers
                )
            return self._send(
                200,
                OFFICE_STUB.read_bytes(),
                headers,
                content_type="text/javascript; charset=utf-8",
            )
        if path == "demo" and method == "GET":
            with self.sandbox.lock:
                page = addin_demo.page(self.sandbox, query)
            return self._send(
                200,
                page.encode(),
                {"Cache-Control": "no-store"},
                content_type="text/html; charset=utf-8",
            )
        body = self._json(raw)
        if method == "POST" and not isinstance(body, dict):
            return self._send(400, {"error": "the body must be a JSON object"}, headers)
        if path == "token" and method == "POST":
            status, answer = issue_tokens(self.sandbox, body)
        elif path == "custom-properties" and method == "POST":
            status, answer = save_custom_properties(self.sandbox, body)
        elif path == "custom-properties" and method == "GET":
            status, answer = read_custom_properties(self.sandbox, query)
        else:
            status, answer = 404, {"error": "unknown add-in endpoint"}
        return self._send(status, answer, headers)
