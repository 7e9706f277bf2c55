"""Graph change-notification subscriptions, one per synced mailbox, and consent state changes.

Subscriptions are created when a mailbox starts syncing, renewed before the expiry Graph
returned, recreated when Graph forgot them, reauthorized on request and deleted with their
user or integration. A revoked consent pauses the integration once (one Activity, no storm);
a new consent resumes it.
"""

import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models.signals import post_save, pre_delete
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from .models import Activity, Integration, MailboxSubscription, SyncedUser
from .providers.base import ConsentRevoked, MailboxNotFound, ProviderError

logger = logging.getLogger(__name__)

# Outlook event subscriptions live at most 4,230 minutes; ask for a little less.
SUBSCRIPTION_MINUTES = 4200
# Renew when less than this is left (the beat runs every 30 minutes).
RENEW_BEFORE = timedelta(hours=12)


def graph_client(integration):
    from .providers.graph_api import GraphClient

    return GraphClient(integration.tenant_id)


def webhook_urls() -> tuple[str, str]:
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return (
        base + reverse("calendarsync:graph_notifications"),
        base + reverse("calendarsync:graph_lifecycle"),
    )


def _expiry(response: dict):
    return parse_datetime(response.get("expirationDateTime", "")) or (
        timezone.now() + timedelta(minutes=SUBSCRIPTION_MINUTES)
    )


# ----- consent state


def mark_consent_revoked(integration: Integration, error: ProviderError) -> bool:
    """Pause the integration because its consent is gone. Only the first caller records it
    (a conditional UPDATE), so a hundred failing mailboxes make one Activity, not a hundred."""
    changed = Integration.objects.filter(
        pk=integration.pk,
        status__in=[Integration.Status.CONNECTED, Integration.Status.ERROR],
    ).update(
        status=Integration.Status.CONSENT_REVOKED,
        last_error=str(error)[:500],
        updated_at=timezone.now(),
    )
    integration.status = Integration.Status.CONSENT_REVOKED
    if changed:
        logger.warning("Integration %s: consent revoked (%s)", integration.pk, error.code)
        Activity.record(
            integration,
            "consent_revoked",
            _(
                "Microsoft 365 no longer accepts the app (%(code)s). Syncing is paused until an "
                "administrator gives consent again."
            )
            % {"code": error.code or "consent_revoked"},
            level=Activity.Level.ERROR,
        )
    return bool(changed)


def resume_integration(integration: Integration) -> None:
    """After a new consent: subscribe every mailbox again and sync them all."""
    from .sync import request_syncs
    from .tasks import ensure_graph_subscription

    for user_id in integration.users.values_list("pk", flat=True):
        transaction.on_commit(lambda pk=user_id: ensure_graph_subscription.delay(pk))
    request_syncs(integration.users.all())


def _request_sync(synced_user) -> None:
    from .sync import request_sync  # late: the sync core imports this module

    request_sync(synced_user)


# ----- one mailbox's subscription


def ensure_subscription(synced_user: SyncedUser) -> MailboxSubscription | None:
    """Create the mailbox's subscription, or renew it when it is close to expiry."""
    integration = synced_user.integration
    if integration.kind != Integration.Kind.GRAPH or not integration.syncing:
        return None
    existing = MailboxSubscription.objects.filter(synced_user=synced_user).first()
    if existing and existing.status == MailboxSubscription.Status.ACTIVE:
        if existing.expires_at and existing.expires_at - timezone.now() > RENEW_BEFORE:
            return existing
        return renew(existing)
    return create(synced_user, replacing=existing)


def create(synced_user: SyncedUser, *, replacing=None) -> MailboxSubscription | None:
    integration = synced_user.integration
    notification_url, lifecycle_url = webhook_urls()
    client_state = secrets.token_urlsafe(48)  # ≤ 128 characters, as Graph requires
    try:
        response = graph_client(integration).create_subscription(
            synced_user.email,
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            client_state=client_state,
            expires=timezone.now() + timedelta(minutes=SUBSCRIPTION_MINUTES),
        )
    except ConsentRevoked as exc:
        mark_consent_revoked(integration, exc)
        return None
    except ProviderError as exc:
        _record_failure(synced_user, replacing, exc)
        return None
    fields = {
        "provider_subscription_id": response["id"],
        "expires_at": _expiry(response),
        "client_state": client_state,
        "status": MailboxSubscription.Status.ACTIVE,
        "last_error": "",
    }
    try:
        if replacing is not None:
            replacing.delete()
        # Plain UPDATE, else INSERT: no read-then-write transaction (SQLite answers those
        # with "database is locked" at once when another process is writing).
        if not MailboxSubscription.objects.filter(synced_user=synced_user).update(**fields):
            MailboxSubscription.objects.create(synced_user=synced_user, **fields)
    except DatabaseError:
        # Graph has a subscription we could not record: remove it rather than leak it.
        delete_remote(integration.tenant_id, response["id"])
        raise
    return MailboxSubscription.objects.get(synced_user=synced_user)


def _record_failure(synced_user, subscription, exc: ProviderError) -> None:
    message = (
        _("The mailbox was not found.")
        if isinstance(exc, MailboxNotFound)
        else _("Change notifications could not be set up: %(error)s") % {"error": exc.code}
    )
    logger.warning("Graph subscription for user %s failed: %s", synced_user.pk, exc.code)
    if subscription is not None:
        subscription.status = MailboxSubscription.Status.FAILED
        subscription.last_error = message
        subscription.save(update_fields=["status", "last_error"])


def renew(subscription: MailboxSubscription) -> MailboxSubscription | None:
    synced_user = subscription.synced_user
    integration = synced_user.integration
    try:
        response = graph_client(integration).renew_subscription(
            subscription.provider_subscription_id,
            timezone.now() + timedelta(minutes=SUBSCRIPTION_MINUTES),
        )
    except ConsentRevoked as exc:
        mark_consent_revoked(integration, exc)
        return None
    except ProviderError as exc:
        if exc.code == "subscription_gone":
            # Graph forgot it: a new subscription, and a resync for what we may have missed.
            created = create(synced_user, replacing=subscription)
            _request_sync(synced_user)
            return created
        _record_failure(synced_user, subscription, exc)
        return None
    subscription.expires_at = _expiry(response)
    subscription.status = MailboxSubscription.Status.ACTIVE
    subscription.last_error = ""
    subscription.save(update_fields=["expires_at", "status", "last_error"])
    return subscription


def reauthorize(subscription: MailboxSubscription) -> None:
    integration = subscription.synced_user.integration
    try:
        graph_client(integration).reauthorize_subscription(subscription.provider_subscription_id)
    except ConsentRevoked as exc:
        mark_consent_revoked(integration, exc)
    except ProviderError as exc:
        if exc.code == "subscription_gone":
            create(subscription.synced_user, replacing=subscription)
            _request_sync(subscription.synced_user)
        else:
            _record_failure(subscription.synced_user, subscription, exc)


def handle_lifecycle(subscription: MailboxSubscription, event: str) -> None:
    """reauthorizationRequired → reauthorize; subscriptionRemoved → recreate and resync;
    missed → resync."""
    integration = subscription.synced_user.integration
    if not integration.syncing:
        return
    if event == "reauthorizationRequired":
        reauthorize(subscription)
    elif event == "subscriptionRemoved":
        create(subscription.synced_user, replacing=subscription)
        _request_sync(subscription.synced_user)
    elif event == "missed":
        _request_sync(subscription.synced_user)
    else:
        logger.info("Ignoring unknown Graph lifecycle event %r", event)


def renew_due() -> int:
    """The beat's job: subscribe mailboxes that lack a subscription, renew those close to
    expiry, retry failed ones. Paused integrations are skipped (no error storm)."""
    done = 0
    users = SyncedUser.objects.filter(
        integration__kind=Integration.Kind.GRAPH,
        integration__active=True,
        integration__status__in=[Integration.Status.CONNECTED, Integration.Status.ERROR],
    ).select_related("integration")
    due = timezone.now() + RENEW_BEFORE
    for user in users.exclude(
        mailbox_subscription__status=MailboxSubscription.Status.ACTIVE,
        mailbox_subscription__expires_at__gt=due,
    ).iterator():
        user.integration.refresh_from_db(fields=["status"])
        if not user.integration.syncing:
            continue  # consent was revoked while we worked through the list
        ensure_subscription(user)
        done += 1
    return done


def delete_remote(tenant_id: str, provider_subscription_id: str) -> None:
    from .providers.graph_api import GraphClient

    try:
        GraphClient(tenant_id).delete_subscription(provider_subscription_id)
    except ConsentRevoked:
        pass  # without consent Graph drops the subscription itself
    except ProviderError as exc:
        logger.warning("Could not delete Graph subscription: %s", exc.code)


# ----- keep subscriptions in step with users and integrations


@receiver(post_save, sender=SyncedUser, dispatch_uid="graph_subscribe_new_user")
def _subscribe_new_user(sender, instance, created, **kwargs):
    if created and instance.integration.kind == Integration.Kind.GRAPH:
        from .tasks import ensure_graph_subscription

        transaction.on_commit(lambda: ensure_graph_subscription.delay(instance.pk))


@receiver(pre_delete, sender=MailboxSubscription, dispatch_uid="graph_unsubscribe")
def _unsubscribe_deleted(sender, instance, **kwargs):
    """Removing a user or an integration removes its Graph subscription too."""
    row = (
        MailboxSubscription.objects.filter(pk=instance.pk)
        .values("synced_user__integration__kind", "synced_user__integration__tenant_id")
        .first()
    )
    if not row or row["synced_user__integration__kind"] != Integration.Kind.GRAPH:
        return
    tenant_id = row["synced_user__integration__tenant_id"]
    subscription_id = instance.provider_subscription_id
    from .tasks import delete_graph_subscription

    transaction.on_commit(lambda: delete_graph_subscription.delay(tenant_id, subscription_id))
