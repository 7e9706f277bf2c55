"""Microsoft Graph over HTTP: tokens, window reads, $batch and change-notification subscriptions.

All Exchange Online I/O goes through `GraphClient.request` and `GraphClient.batch`: one place for
timeouts, throttling (429 honours Retry-After, inside a batch too), the 4-concurrent-requests per
mailbox limit, and classifying failures: lost access becomes an `AccessLost` (consent revoked,
credentials rejected, permissions removed: the whole integration needs its administrator), an
unknown mailbox `MailboxNotFound` (that user only).
"""

import logging
import re
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from urllib.parse import urlencode

import msal
import requests
from django.conf import settings

from ... import metrics
from ..base import (
    ConsentRevoked,
    CredentialsRejected,
    MailboxNotFound,
    PermissionsRemoved,
    ProviderError,
    SubscriptionGone,
)

logger = logging.getLogger(__name__)

GRAPH_SCOPES = ["https://graph.microsoft.com/.default"]
# Token errors that mean the tenant withdrew (or never finished) consent, or disabled the app.
CONSENT_ERRORS = {"unauthorized_client", "invalid_client"}
CONSENT_CODES = {700016, 7000229, 7000112, 65001}
BATCH_LIMIT = 20  # Graph's JSON batching maximum
MAILBOX_CONCURRENCY = 4  # Exchange Online: 4 concurrent requests per app and mailbox
PAGE_SIZE = 100
MAX_ATTEMPTS = 6
MAX_RETRY_AFTER = 120  # seconds; a longer wait gives up and leaves the retry to the next run
TIMEOUT = (5, 30)
MAILBOX_ERRORS = {
    "ErrorInvalidUser",
    "MailboxNotEnabledForRESTAPI",
    "ResourceNotFound",
    "ErrorMailboxNotFound",
    "MailboxNotFound",
}


def _aadsts_codes(result: dict) -> set[int]:
    codes = {int(code) for code in result.get("error_codes") or [] if str(code).isdigit()}
    codes |= {int(code) for code in re.findall(r"AADSTS(\d+)", result.get("error_description", ""))}
    return codes


def classify_token_error(result: dict) -> ProviderError:
    """msal's error dict → the matching ProviderError. Branch on `error`, then on the codes."""
    error = result.get("error", "")
    codes = _aadsts_codes(result)
    label = f"{error} (AADSTS{min(codes)})" if codes else error
    if error == "unauthorized_client" or (error in CONSENT_ERRORS and codes & CONSENT_CODES):
        return ConsentRevoked(f"consent revoked or app disabled: {label}", code=label)
    if error == "invalid_client":
        # A wrong or expired client secret: ours to fix (Telenor's app registration).
        return CredentialsRejected(f"app credentials rejected: {label}", code=label)
    if error == "invalid_request" and 90002 in codes:
        return ProviderError(f"tenant not found: {label}", permanent=True, code=label)
    return ProviderError(f"token request failed: {label}", code=label)


@cache
def _session(ca_bundle: str) -> requests.Session:
    """One pooled HTTP session per trust setting; never the environment's proxies or CAs."""
    session = requests.Session()
    session.trust_env = False  # this machine sets REQUESTS_CA_BUNDLE; trust only our setting
    session.verify = ca_bundle if ca_bundle and Path(ca_bundle).exists() else True
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.hooks["response"].append(metrics.graph_response_hook)  # every answer, msal's too
    return session


def http_session() -> requests.Session:
    return _session(settings.MS_CA_BUNDLE or "")


_apps: dict[tuple, msal.ConfidentialClientApplication] = {}
_apps_lock = threading.Lock()


def _app_key(tenant_id: str) -> tuple:
    return (settings.MS_LOGIN_URL, tenant_id, settings.MS_CLIENT_ID, settings.MS_CA_BUNDLE)


def msal_app(tenant_id: str, *, fresh=False) -> msal.ConfidentialClientApplication:
    """The tenant's msal app; it keeps its tokens in its own in-memory cache."""
    key = _app_key(tenant_id)
    with _apps_lock:
        if fresh or key not in _apps:
            _apps[key] = msal.ConfidentialClientApplication(
                settings.MS_CLIENT_ID,
                client_credential=settings.MS_CLIENT_SECRET,
                authority=f"{settings.MS_LOGIN_URL.rstrip('/')}/{tenant_id}",
                http_client=http_session(),
                instance_discovery=False,
                token_cache=msal.TokenCache(),
                timeout=TIMEOUT[1],
            )
        return _apps[key]


def acquire_token(tenant_id: str, *, fresh=False) -> str:
    try:
        result = msal_app(tenant_id, fresh=fresh).acquire_token_for_client(GRAPH_SCOPES)
    except (requests.RequestException, ValueError) as exc:
        # ValueError: msal could not read the authority's OpenID configuration.
        raise ProviderError(f"sign-in service unreachable: {type(exc).__name__}") from exc
    if "access_token" in result:
        return result["access_token"]
    # msal remembers failed token responses for a while; forget the app so that a consent
    # given again works at the next attempt instead of being answered from that memory.
    with _apps_lock:
        _apps.pop(_app_key(tenant_id), None)
    raise classify_token_error(result)


def confirm_tenant(tenant_id: str) -> None:
    """Prove the consent: acquire a brand-new token for `tenant_id` (raises ProviderError)."""
    if not re.fullmatch(r"[0-9a-fA-F-]{36}", tenant_id or ""):
        raise ProviderError("not a tenant id", permanent=True, code="invalid_tenant")
    acquire_token(tenant_id, fresh=True)


_mailbox_slots: dict[tuple[str, str], threading.BoundedSemaphore] = defaultdict(
    lambda: threading.BoundedSemaphore(MAILBOX_CONCURRENCY)
)
_slots_lock = threading.Lock()


def mailbox_slot(tenant_id: str, mailbox: str) -> threading.BoundedSemaphore:
    with _slots_lock:
        return _mailbox_slots[(tenant_id, mailbox.lower())]


def _retry_after(headers, attempt: int) -> float:
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = min(2**attempt, 30)
    return max(0.0, seconds)


def _error_code(body) -> str:
    if isinstance(body, dict):
        return str((body.get("error") or {}).get("code", ""))
    return ""


def classify_graph_error(status: int, body, *, mailbox: str | None) -> ProviderError:
    code = _error_code(body)
    if status == 401:
        return ConsentRevoked(f"Graph rejected the token ({code or 401})", code=f"graph_401_{code}")
    if status == 403:
        return PermissionsRemoved(f"Graph denied access ({code or 403})", code=f"graph_403_{code}")
    if status == 404 and mailbox and code in MAILBOX_ERRORS:
        return MailboxNotFound(f"mailbox not found ({code})")
    if status == 404:
        return (
            SubscriptionGone(f"not found ({code})")
            if not mailbox
            else ProviderError(f"not found ({code})", permanent=True, code=code)
        )
    if status == 429 or status >= 500:
        return ProviderError(f"Graph busy ({status} {code})", code="throttled")
    return ProviderError(f"Graph error {status} {code}", permanent=True, code=code or str(status))


class GraphClient:
    """Microsoft Graph for one tenant, app-only."""

    def __init__(self, tenant_id: str, *, sleep=time.sleep):
        if not tenant_id:
            raise ConsentRevoked("no tenant: consent was never given", code="no_tenant")
        self.tenant_id = tenant_id
        self.sleep = sleep

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith("https://") or path_or_url.startswith("http://"):
            return path_or_url
        return settings.MS_GRAPH_URL.rstrip("/") + path_or_url

    def _send(self, method, url, **kwargs) -> requests.Response:
        """One HTTP exchange with a token; a 401 is retried once with a brand-new token."""
        for fresh in (False, True):
            token = acquire_token(self.tenant_id, fresh=fresh)
            headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
            try:
                response = http_session().request(
                    method, url, headers=headers, timeout=TIMEOUT, **kwargs
                )
            except requests.RequestException as exc:
                metrics.count_response(metrics.GRAPH, "error")
                raise ProviderError(f"Graph unreachable: {type(exc).__name__}") from exc
            if response.status_code != 401:
                return response
            kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        mailbox: str | None = None,
        params=None,
        json=None,
        headers=None,
        errors=None,
    ) -> dict | None:
        """A Graph call with throttling handled; returns the JSON body (None for 204).
        `errors(status, body)`: the caller's own reading of a failure (a ProviderError, or
        None for the general one), for calls whose 403 or 404 mean something narrower."""
        url = self.url(path)
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        with ExitStack() as stack:
            if mailbox:
                stack.enter_context(mailbox_slot(self.tenant_id, mailbox))
            for attempt in range(MAX_ATTEMPTS):
                response = self._send(method, url, json=json, headers=dict(headers or {}))
                if response.status_code in (429, 503, 504) and attempt < MAX_ATTEMPTS - 1:
                    wait = _retry_after(response.headers, attempt)
                    if wait > MAX_RETRY_AFTER:
                        break
                    logger.info("Graph answered %s; waiting %.1f s", response.status_code, wait)
                    metrics.throttled(metrics.GRAPH, wait)
                    self.sleep(wait)
                    continue
                break
        if response.status_code < 300:
            return response.json() if response.content else None
        body = _json_or_none(response)
        own = errors(response.status_code, body) if errors else None
        raise own or classify_graph_error(response.status_code, body, mailbox=mailbox)

    def batch(self, steps: list[dict]) -> dict[str, dict]:
        """Run up to 20 steps in one $batch; inner 429s wait for their Retry-After and are
        sent again. Returns {step id: {"status", "headers", "body"}}."""
        if len(steps) > BATCH_LIMIT:
            raise ValueError(f"a $batch holds at most {BATCH_LIMIT} requests")
        results: dict[str, dict] = {}
        pending = list(steps)
        mailboxes = sorted({s["mailbox"].lower() for s in steps if s.get("mailbox")})
        with ExitStack() as stack:
            for mailbox in mailboxes:
                stack.enter_context(mailbox_slot(self.tenant_id, mailbox))
            for attempt in range(MAX_ATTEMPTS):
                body = {
                    "requests": [{k: v for k, v in s.items() if k != "mailbox"} for s in pending]
                }
                data = self.request("POST", "/$batch", json=body)
                retry, wait = [], 0.0
                by_id = {s["id"]: s for s in pending}
                for response in (data or {}).get("responses", []):
                    step = by_id.get(str(response.get("id")))
                    if step is None:
                        continue
                    if response.get("status") in (429, 503) and attempt < MAX_ATTEMPTS - 1:
                        retry.append(step)
                        wait = max(wait, _retry_after(response.get("headers"), attempt))
                    else:
                        results[step["id"]] = response
                pending = retry
                if not pending:
                    break
                if wait > MAX_RETRY_AFTER:
                    break
                logger.info("%d batch steps throttled; waiting %.1f s", len(pending), wait)
                metrics.throttled(metrics.GRAPH, wait)
                self.sleep(wait)
        for step in pending:
            results[step["id"]] = {"status": 429, "headers": {}, "body": {}}
        return results

    # ----- change-notification subscriptions (made and renewed by GraphProvider)

    def delete_subscription(self, subscription_id: str) -> None:
        try:
            self.request("DELETE", f"/subscriptions/{subscription_id}")
        except SubscriptionGone:
            pass  # already gone: that is what we wanted


def _json_or_none(response):
    try:
        return response.json()
    except ValueError:
        return None


def graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def graph_window_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
