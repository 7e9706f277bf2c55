"""Who calls the add-in's API: the token → the caller's own SyncedUser, or why not.

Two kinds of token (shared reference "Outlook add-in: identifying the user"): one with an
`appctx` claim is an Exchange identity token (Exchange On Prem), any other an Entra access
token (Exchange Online, nested app authentication). Each names its organisation (a tenant, an
Exchange server); only integrations of that organisation are searched, and in them only the
mailbox the token proves, so a caller reaches their own SyncedUser and nothing else.

An Exchange identity token names no mailbox: the first time, the user links it (`link`) by
putting our challenge into a booking of their own mailbox, which we read with the
integration's credentials.
"""

import hashlib
import hmac
import logging

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from ..models import Integration, SyncedUser
from ..providers import provider_for
from ..providers.addin import TokenRefused, VerificationUnavailable
from ..providers.base import ItemNotFound, MailboxNotFound, ProviderError, ReadsAddinProperties
from ..providers.ews import identity_token
from ..providers.graph import addin_token

logger = logging.getLogger(__name__)

LINK_PROPERTY = "mssLink"  # the custom property the pane writes the challenge to


class Refused(Exception):
    """An answer other than the one asked for: `status`, a stable `code` and a message for
    the user (lazy, translated when answered)."""

    status = 400
    code = "bad_request"
    message = _("The request could not be understood.")

    def __init__(self, message=None, **extra):
        super().__init__(str(message or self.message))
        if message is not None:
            self.message = message
        self.extra = extra  # more keys for the JSON answer


class NotAuthenticated(Refused):
    status = 401
    code = "invalid_token"
    message = _("Outlook could not prove who you are. Close the pane and open it again.")


class NotFound(Refused):
    status = 404
    code = "not_found"
    message = _("Your mailbox is not synced with One X. Ask your administrator to add you.")


class NotLinked(Refused):
    status = 403
    code = "not_linked"
    message = _("Confirm once that this mailbox is yours.")


class LinkFailed(Refused):
    status = 403
    code = "link_failed"
    message = _("This mailbox could not be confirmed as yours. Try again.")


class Unavailable(Refused):
    status = 503
    code = "unavailable"
    message = _("Your organisation's sign-in could not be checked just now. Try again shortly.")


def bearer_token(request) -> str:
    scheme, _space, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated()
    return token.strip()


def challenge(unique_id: str) -> str:
    """What the pane writes into a booking to prove the mailbox is the token holder's."""
    digest = hmac.new(settings.SECRET_KEY.encode(), unique_id.encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def caller(token: str) -> SyncedUser:
    """The SyncedUser the token proves; Refused otherwise."""
    if identity_token.is_identity_token(token):
        integrations, unique_id = _exchange_identity(token)
        user = _users(integrations).filter(addin_identity=unique_id).first()
        if user is None:
            raise NotLinked(challenge=challenge(unique_id))
        return user
    return _entra_caller(token)


def link(token: str, mailbox: str, item_id: str) -> SyncedUser:
    """Exchange On Prem's first call: store the token's identity on the SyncedUser of
    `mailbox` once that mailbox's booking `item_id` carries the token's challenge."""
    if not identity_token.is_identity_token(token):
        raise Refused(_("Only Exchange On Prem links a mailbox."))
    if not isinstance(mailbox, str) or not isinstance(item_id, str) or not item_id:
        raise Refused()
    integrations, unique_id = _exchange_identity(token)
    user = _users(integrations).filter(email=mailbox.strip().lower()).first()
    if user is None:
        raise NotFound()
    provider = provider_for(user.integration)
    if not isinstance(provider, ReadsAddinProperties):
        raise LinkFailed()
    try:
        properties = provider.addin_properties(user.email, item_id)
    except (ItemNotFound, MailboxNotFound) as exc:
        logger.info("add-in link refused for user %s: %s", user.pk, exc)
        raise LinkFailed() from exc
    except ProviderError as exc:
        logger.warning("add-in link could not read user %s's booking: %s", user.pk, exc)
        raise (LinkFailed() if exc.permanent else Unavailable()) from exc
    expected = challenge(unique_id)
    if not hmac.compare_digest(str(properties.get(LINK_PROPERTY, "")), expected):
        raise LinkFailed()
    # One identity is one person: a link to another mailbox replaces an older one.
    SyncedUser.objects.filter(addin_identity=unique_id).exclude(pk=user.pk).update(
        addin_identity=""
    )
    SyncedUser.objects.filter(pk=user.pk).update(addin_identity=unique_id)
    user.addin_identity = unique_id
    logger.info("add-in linked for user %s (integration %s)", user.pk, user.integration_id)
    return user


# ----- Exchange On Prem


def _exchange_integrations(token: str) -> list[Integration]:
    """The On Prem integrations whose Exchange server the token claims to come from."""
    try:
        amurl = identity_token.unverified_context(token).amurl
    except TokenRefused as exc:
        raise NotAuthenticated() from exc
    candidates = Integration.objects.filter(kind=Integration.Kind.EWS).exclude(
        status=Integration.Status.REMOVING
    )
    return [i for i in candidates if identity_token.same_server(amurl, i.ews_url)]


def _exchange_identity(token: str) -> tuple[list[Integration], str]:
    """The integrations on the token's Exchange server and the identity it proves."""
    integrations = _exchange_integrations(token)
    if not integrations:
        # No integration on that server: its metadata is never fetched (the token chose it).
        raise NotAuthenticated()
    try:
        # Integrations on one server share its metadata: the first proves the token for all.
        context = identity_token.validate(token, integrations[0])
    except TokenRefused as exc:
        logger.info("Exchange identity token refused: %s", exc)
        raise NotAuthenticated() from exc
    except VerificationUnavailable as exc:
        logger.warning("Exchange identity token not checked: %s", exc)
        raise Unavailable() from exc
    return integrations, context.unique_id


# ----- Exchange Online


def _entra_caller(token: str) -> SyncedUser:
    try:
        tenant_id = addin_token.unverified_tenant(token)
    except TokenRefused as exc:
        raise NotAuthenticated() from exc
    integrations = list(
        Integration.objects.filter(kind=Integration.Kind.GRAPH, tenant_id=tenant_id).exclude(
            status=Integration.Status.REMOVING
        )
    )
    if not integrations:
        # Not a tenant we serve: nothing to look up, and no keys fetched for it.
        raise NotFound()
    try:
        entra_user = addin_token.validate(token)
    except TokenRefused as exc:
        logger.info("Entra add-in token refused: %s", exc)
        raise NotAuthenticated() from exc
    except VerificationUnavailable as exc:
        logger.warning("Entra add-in token not checked: %s", exc)
        raise Unavailable() from exc
    user = _users(integrations).filter(email=entra_user.username).first()
    if user is None:
        raise NotFound()
    return user


def _users(integrations):
    return (
        SyncedUser.objects.filter(integration__in=integrations)
        .select_related("integration", "integration__company", "subscription")
        .order_by("-integration__active", "pk")
    )
