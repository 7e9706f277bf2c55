"""EWS over exchangelib: one Configuration per integration, impersonated accounts, and what
exchangelib's errors mean for the sync core.

The service account holds ApplicationImpersonation; every mailbox is reached as itself
(`access_type=IMPERSONATION`, `autodiscover=False`). `FaultTolerance` waits out ErrorServerBusy
for its BackOffMilliseconds, up to EWS_MAX_WAIT seconds. The EWS URL passes the outbound check
again before every connection is configured (a name can be re-pointed after it was saved).
"""

import logging
import threading

import requests
from django.conf import settings
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    Account,
    Configuration,
    Credentials,
    EWSTimeZone,
    FaultTolerance,
)
from exchangelib import errors as ews_errors
from exchangelib.folders import Calendar, DistinguishedFolderId, Root
from exchangelib.properties import Mailbox
from exchangelib.protocol import BaseProtocol, Protocol
from exchangelib.version import Build, Version

from calendarsync import metrics, outbound

from ..base import (
    CredentialsRejected,
    MailboxNotFound,
    PermissionsRemoved,
    ProviderError,
    ServerUntrusted,
)

logger = logging.getLogger(__name__)

STOCKHOLM = EWSTimeZone("Europe/Stockholm")
AUTH_TYPES = {"ntlm": NTLM, "basic": BASIC}


class TrustedCAAdapter(requests.adapters.HTTPAdapter):
    """exchangelib's HTTP adapter, trusting EWS_CA_BUNDLE too (the sandbox's test CA); the
    system's CAs otherwise. Verification is never turned off."""

    def cert_verify(self, conn, url, verify, cert):
        bundle = settings.EWS_CA_BUNDLE
        super().cert_verify(conn, url, bundle if bundle and verify else verify, cert)

    def send(self, request, *args, **kwargs):
        # Every EWS exchange passes here (NTLM's 401 handshake legs too): count its answer.
        try:
            response = super().send(request, *args, **kwargs)
        except requests.RequestException:
            metrics.count_response(metrics.EWS, "error")
            raise
        metrics.count_response(metrics.EWS, response.status_code)
        return response


BaseProtocol.HTTP_ADAPTER_CLS = TrustedCAAdapter  # exchangelib's documented hook (global)


class WaitOutThrottling(FaultTolerance):
    """FaultTolerance (ErrorServerBusy waits its BackOffMilliseconds, up to max_wait), except
    that a final 401 is a refused login at once: exchangelib would take it for throttling and
    retry until max_wait, per mailbox, while the admin needs to hear about the password."""

    def back_off(self, seconds):
        # exchangelib sleeps until then before its next request; past max_wait it gives up
        # (raises), which is no wait.
        super().back_off(seconds)
        metrics.throttled(metrics.EWS, self.DEFAULT_BACKOFF if seconds is None else seconds)

    def raise_response_errors(self, response):
        if response.status_code == 401:
            raise ews_errors.UnauthorizedError(f"Invalid credentials for {response.url}")
        return super().raise_response_errors(response)


_configs: dict[tuple, Configuration] = {}
_configs_lock = threading.Lock()


def _config_key(integration) -> tuple:
    return (
        integration.pk,
        integration.ews_url,
        integration.ews_username,
        integration.ews_build,
        integration.updated_at,
    )


def known_version(integration) -> Version | None:
    """The build a connection test recorded, so exchangelib need not probe for it."""
    try:
        parts = [int(part) for part in integration.ews_build.split(".")]
        return Version(build=Build(*parts[:4])) if len(parts) >= 2 else None
    except (ValueError, TypeError):
        return None


def configuration(integration) -> Configuration:
    """The integration's Configuration (pooled connections), made again after an edit."""
    try:
        outbound.check_url(integration.ews_url)
    except outbound.RefusedURL as exc:
        raise ProviderError(f"EWS URL refused: {exc}", permanent=True, code="url_refused") from exc
    key = _config_key(integration)
    with _configs_lock:
        config = _configs.get(key)
        if config is None:
            for old in [k for k in _configs if k[0] == integration.pk]:
                _configs.pop(old)
            config = Configuration(
                service_endpoint=integration.ews_url,
                credentials=Credentials(integration.ews_username, integration.ews_password),
                auth_type=AUTH_TYPES.get(settings.EWS_AUTH_TYPE, NTLM),
                retry_policy=WaitOutThrottling(max_wait=settings.EWS_MAX_WAIT),
                max_connections=settings.EWS_MAX_CONNECTIONS,
                version=known_version(integration),
            )
            _configs[key] = config
        return config


def account(integration, mailbox: str, *, impersonate: bool = True) -> Account:
    return Account(
        primary_smtp_address=mailbox,
        config=configuration(integration),
        autodiscover=False,
        access_type=IMPERSONATION if impersonate else DELEGATE,
        default_timezone=STOCKHOLM,
    )


def calendar(integration, mailbox: str):
    """The mailbox's calendar folder by its distinguished id, without fetching it: exchangelib's
    `account.calendar` would first GetFolder the root and then the calendar, two requests per
    mailbox and read for nothing but the folder's id."""
    owner = Mailbox(email_address=mailbox)
    root = Root(
        account=account(integration, mailbox),
        _distinguished_id=DistinguishedFolderId(id="msgfolderroot", mailbox=owner),
    )
    return Calendar(
        root=root, _distinguished_id=DistinguishedFolderId(id="calendar", mailbox=owner)
    )


def server_version(integration):
    """The Exchange version, which exchangelib probes for (authenticated) once per protocol."""
    return Protocol(config=configuration(integration)).version


def classify(exc: Exception) -> ProviderError:
    """An exchangelib failure → the ProviderError the core acts on."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ews_errors.ErrorNonExistentMailbox | ews_errors.ErrorMailRecipientNotFound):
        return MailboxNotFound(type(exc).__name__)
    if isinstance(exc, ews_errors.ErrorImpersonateUserDenied | ews_errors.ErrorAccessDenied):
        return PermissionsRemoved(type(exc).__name__, code="impersonation_denied")
    if isinstance(exc, ews_errors.UnauthorizedError):
        return CredentialsRejected("the service account was refused", code="unauthorized")
    if isinstance(exc, ews_errors.RateLimitError):
        return ProviderError("EWS kept answering ErrorServerBusy", code="server_busy")
    if isinstance(exc, requests.exceptions.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return ServerUntrusted("the EWS certificate is not trusted", code="tls")
    if isinstance(exc, ews_errors.TransportError | requests.RequestException | OSError):
        return ProviderError(f"EWS unreachable: {type(exc).__name__}", code="unreachable")
    if isinstance(exc, ews_errors.EWSError):
        return ProviderError(f"EWS error: {type(exc).__name__}", code=type(exc).__name__)
    raise exc


def forget(integration) -> None:
    """Forget the integration's Configuration (after removal or a credentials change)."""
    with _configs_lock:
        for key in [k for k in _configs if k[0] == integration.pk]:
            _configs.pop(key)
