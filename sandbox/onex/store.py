"""The sandbox's One X state: companies, subscriptions, reasons, absence entries and tokens.

Everything lives in one dict guarded by one lock and is written to a JSON file (atomically,
debounced) so a restart keeps it. Validation follows the contract in onex-api.md.
"""

import base64
import copy
import json
import os
import re
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime

from .demo import demo_companies

EXTERNAL_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
NOTE_MAX = 100
BATCH_MAX = 100


class Problem(Exception):
    """An application/problem+json answer."""

    def __init__(self, status, code, detail="", *, title=None, errors=None, headers=None):
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or code.replace("_", " ").capitalize()
        self.errors = errors or []
        self.headers = headers or {}

    def as_json(self, request_id=""):
        return {
            "type": f"https://onex.example/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
            "errors": self.errors,
            "requestId": request_id,
        }


def utcnow():
    return datetime.now(UTC)


def iso(moment):
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value):
    """An RFC 3339 time with an offset, or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def encode_cursor(offset):
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor):
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, offset = raw.split(":", 1)
        if kind != "o" or int(offset) < 0:
            raise ValueError
        return int(offset)
    except ValueError as error:
        raise Problem(
            422, "validation_error", "Invalid cursor.", errors=[_err("cursor")]
        ) from error


def parse_limit(value, default, maximum):
    if value in (None, ""):
        return default
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= maximum:
        raise Problem(
            422, "validation_error", f"limit must be 1..{maximum}.", errors=[_err("limit")]
        )
    return limit


def _err(field, code="invalid"):
    return {"field": field, "code": code}


def _invalid(detail, field, code="invalid"):
    return Problem(422, "validation_error", detail, errors=[_err(field, code)])


class Store:
    def __init__(self, path=None, *, seed_demo=True, flush_interval=0.2):
        self.path = path
        self.lock = threading.RLock()
        self.flush_interval = flush_interval
        self._dirty = threading.Event()
        self._stopped = threading.Event()
        self.data = self._load() if path and os.path.exists(path) else None
        if self.data is None:
            self.data = {"version": 1, "companies": {}, "tokens": {}}
            self._dirty.set()
        if seed_demo:  # also a demo company added since the state file was written
            for spec in demo_companies():
                if spec["companyId"] not in self.data["companies"]:
                    self.add_company_from_spec(spec)
                    self._dirty.set()
        self._flusher = None
        if path:
            self._flusher = threading.Thread(target=self._flush_loop, daemon=True)
            self._flusher.start()

    # Persistence --------------------------------------------------------------------------

    def _load(self):
        with open(self.path, encoding="utf-8") as handle:
            return json.load(handle)

    def _flush_loop(self):
        while not self._stopped.is_set():
            self._dirty.wait(timeout=1.0)
            if self._dirty.is_set() and not self._stopped.is_set():
                time.sleep(self.flush_interval)  # collect a burst of writes into one file write
                self.flush()

    def changed(self):
        self._dirty.set()

    def flush(self):
        if not self.path:
            return
        with self.lock:
            self._dirty.clear()
            text = json.dumps(self.data, ensure_ascii=False, sort_keys=True)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, self.path)

    def close(self):
        self._stopped.set()
        self._dirty.set()
        if self._flusher:
            self._flusher.join(timeout=5)
        self.flush()

    # Tokens -------------------------------------------------------------------------------

    def issue_token(self, lifetime):
        token = secrets.token_urlsafe(24)
        with self.lock:
            now = time.time()
            tokens = self.data["tokens"]
            for old in [t for t, expires in tokens.items() if expires < now - 3600]:
                del tokens[old]
            tokens[token] = now + lifetime
            self.changed()
        return token

    def check_token(self, token):
        with self.lock:
            expires = self.data["tokens"].get(token)
        if expires is None:
            raise Problem(401, "invalid_token", "Unknown access token.")
        if expires <= time.time():
            raise Problem(401, "token_expired", "The access token has expired.")

    def expire_tokens(self):
        with self.lock:
            for token in self.data["tokens"]:
                self.data["tokens"][token] = 0
            self.changed()

    # Directory ----------------------------------------------------------------------------

    def add_company_from_spec(self, spec):
        with self.lock:
            company = self.data["companies"].setdefault(
                spec["companyId"],
                {"name": spec.get("name", spec["companyId"]), "subscriptions": {}, "reasons": {}},
            )
            company.setdefault("absences", {})
            company["name"] = spec.get("name", company["name"])
            for sub in spec.get("subscriptions", []):
                self.put_subscription(spec["companyId"], sub)
            for reason in spec.get("reasons", []):
                self.put_reason(spec["companyId"], reason)
            self.changed()

    def company(self, company_id):
        company = self.data["companies"].get(company_id)
        if company is None:
            raise Problem(404, "company_not_found", f"No company {company_id}.")
        return company

    def put_subscription(self, company_id, sub):
        with self.lock:
            company = self.company(company_id)
            features = {"absence": True, "diversion": False, "openDiversion": False}
            features.update(sub.get("features", {}))
            record = {
                "subscriptionId": sub["subscriptionId"],
                "email": sub["email"],
                "displayName": sub.get("displayName", ""),
                "extension": sub.get("extension", ""),
                "msisdn": sub.get("msisdn", ""),
                "features": features,
                "admin": bool(sub.get("admin", False)),
            }
            old = company["subscriptions"].get(sub["subscriptionId"])
            if old is None or {k: v for k, v in old.items() if k != "updatedAt"} != record:
                record["updatedAt"] = iso(utcnow())
                company["subscriptions"][sub["subscriptionId"]] = record
                self.changed()
            return company["subscriptions"][sub["subscriptionId"]]

    def delete_subscription(self, company_id, subscription_id):
        with self.lock:
            company = self.company(company_id)
            if company["subscriptions"].pop(subscription_id, None) is None:
                raise Problem(404, "subscription_not_found", f"No subscription {subscription_id}.")
            prefix = f"{subscription_id}/"
            for key in [k for k in company["absences"] if k.startswith(prefix)]:
                del company["absences"][key]
            self.changed()

    def put_reason(self, company_id, reason):
        with self.lock:
            company = self.company(company_id)
            company["reasons"][reason["code"]] = {
                "code": reason["code"],
                "label": dict(reason["label"]),
                "diversionAllowed": bool(reason.get("diversionAllowed", True)),
                "active": bool(reason.get("active", True)),
            }
            self.changed()

    def delete_reason(self, company_id, code):
        with self.lock:
            if self.company(company_id)["reasons"].pop(code, None) is None:
                raise Problem(404, "reason_not_found", f"No absence reason {code}.")
            self.changed()

    def list_subscriptions(self, company_id, *, limit, cursor, updated_since):
        with self.lock:
            subs = sorted(
                self.company(company_id)["subscriptions"].values(),
                key=lambda s: s["subscriptionId"],
            )
            if updated_since is not None:
                subs = [s for s in subs if parse_time(s["updatedAt"]) > updated_since]
            return _page(copy.deepcopy(subs), limit, cursor)

    def list_reasons(self, company_id):
        with self.lock:
            reasons = self.company(company_id)["reasons"].values()
            return copy.deepcopy(sorted(reasons, key=lambda r: r["code"]))

    # Absences -----------------------------------------------------------------------------

    def _subscription(self, company, subscription_id):
        sub = company["subscriptions"].get(subscription_id)
        if sub is None:
            raise Problem(404, "subscription_not_found", f"No subscription {subscription_id}.")
        return sub

    def validate_absence(self, company, sub, body):
        """The stored fields of a PUT body, or a 422 Problem naming what is wrong."""
        if not isinstance(body, dict):
            raise _invalid("The body must be a JSON object.", "body")
        for field in ("reasonCode", "start", "end"):
            if field not in body or body[field] in (None, ""):
                raise _invalid(f"{field} is required.", field, "required")
        start, end = parse_time(body["start"]), parse_time(body["end"])
        if start is None:
            raise _invalid("start must be an RFC 3339 time with an offset.", "start")
        if end is None:
            raise _invalid("end must be an RFC 3339 time with an offset.", "end")
        if end <= start:
            raise _invalid("end must be after start.", "end", "not_after_start")
        return_at = end
        if body.get("returnAt") not in (None, ""):
            return_at = parse_time(body["returnAt"])
            if return_at is None:
                raise _invalid("returnAt must be an RFC 3339 time with an offset.", "returnAt")
            if return_at < start:
                raise _invalid("returnAt must not be before start.", "returnAt")
        for field in ("divert", "openDiversion"):
            if not isinstance(body.get(field, False), bool):
                raise _invalid(f"{field} must be true or false.", field)
        divert, open_diversion = body.get("divert", False), body.get("openDiversion", False)
        note = body.get("note")
        if note is not None and not isinstance(note, str):
            raise _invalid("note must be a string or null.", "note")
        if note is not None and len(note) > NOTE_MAX:
            raise _invalid(f"note must be at most {NOTE_MAX} characters.", "note", "too_long")
        reason = company["reasons"].get(body["reasonCode"])
        if reason is None or not reason["active"]:
            raise Problem(
                422,
                "reason_unknown",
                f"Unknown absence reason {body['reasonCode']}.",
                errors=[_err("reasonCode", "unknown")],
            )
        if open_diversion and not divert:
            raise _invalid("openDiversion requires divert.", "openDiversion", "requires_divert")
        if not sub["features"].get("absence", True):
            raise Problem(422, "feature_not_enabled", "The subscription has no absence service.")
        if divert and not sub["features"].get("diversion"):
            raise Problem(
                422,
                "feature_not_enabled",
                "The subscription has no diversion (Hänvisning) service.",
                errors=[_err("divert", "feature_not_enabled")],
            )
        if open_diversion and not sub["features"].get("openDiversion"):
            raise Problem(
                422,
                "feature_not_enabled",
                "The subscription has no open diversion service.",
                errors=[_err("openDiversion", "feature_not_enabled")],
            )
        if divert and not reason["diversionAllowed"]:
            raise _invalid(
                "The absence reason does not allow diversion.", "divert", "diversion_not_allowed"
            )
        return {
            "reasonCode": body["reasonCode"],
            "start": iso(start),
            "end": iso(end),
            "returnAt": iso(return_at),
            "divert": divert,
            "openDiversion": open_diversion,
            "note": note,
        }

    def put_absence(self, company_id, subscription_id, external_id, body):
        """Create or replace; returns (status, stored entry)."""
        with self.lock:
            company = self.company(company_id)
            sub = self._subscription(company, subscription_id)
            if not EXTERNAL_ID.match(external_id or ""):
                raise _invalid("externalId must be 1..64 of [A-Za-z0-9._-].", "externalId")
            fields = self.validate_absence(company, sub, body)
            key = f"{subscription_id}/{external_id}"
            old = company["absences"].get(key)
            if old is not None and all(old[k] == v for k, v in fields.items()):
                return 200, self._with_status(old)
            entry = {
                "absenceId": old["absenceId"] if old else str(uuid.uuid4()),
                "externalId": external_id,
                "subscriptionId": subscription_id,
                "origin": "integration",
                **fields,
                "revision": old["revision"] + 1 if old else 1,
                "updatedAt": iso(utcnow()),
            }
            company["absences"][key] = entry
            self.changed()
            return (200 if old else 201), self._with_status(entry)

    def delete_absence(self, company_id, subscription_id, external_id):
        with self.lock:
            company = self.company(company_id)
            self._subscription(company, subscription_id)
            if company["absences"].pop(f"{subscription_id}/{external_id}", None) is None:
                raise Problem(404, "absence_not_found", f"No absence {external_id}.")
            self.changed()

    def list_absences(self, company_id, *, start, end, subscription_id, limit, cursor):
        with self.lock:
            company = self.company(company_id)
            if subscription_id:
                self._subscription(company, subscription_id)
            entries = []
            for entry in company["absences"].values():
                if subscription_id and entry["subscriptionId"] != subscription_id:
                    continue
                if start and parse_time(entry["end"]) <= start:
                    continue
                if end and parse_time(entry["start"]) >= end:
                    continue
                entries.append(self._with_status(entry))
            entries.sort(key=lambda e: (e["subscriptionId"], e["start"], e["externalId"]))
            return _page(entries, limit, cursor)

    def all_absences(self, company_id):
        with self.lock:
            return [self._with_status(e) for e in self.company(company_id)["absences"].values()]

    @staticmethod
    def _with_status(entry):
        now = utcnow()
        if now < parse_time(entry["start"]):
            status = "scheduled"
        elif now < parse_time(entry["end"]):
            status = "active"
        else:
            status = "ended"
        return {**copy.deepcopy(entry), "status": status}


def _page(items, limit, cursor):
    offset = decode_cursor(cursor)
    page = items[offset : offset + limit]
    more = offset + limit < len(items)
    return {"items": page, "nextCursor": encode_cursor(offset + limit) if more else None}
