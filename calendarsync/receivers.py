"""calendarsync's answers to the onex app's signals (onex may not import calendarsync)."""

from django.dispatch import receiver
from django.utils.translation import gettext as _

from onex.signals import subscriptions_deactivated, subscriptions_reactivated

from . import actors, tasks
from .models import Activity, SyncedUser


def vanished_subscription_message():
    return _(
        "This user's One X subscription no longer exists in One X, so nothing is synced for "
        "them. Remove the user, or ask Telenor to restore the subscription."
    )


@receiver(subscriptions_deactivated)
def mark_users_of_vanished_subscriptions(sender, company, subscriptions, **kwargs):
    """Keep the users (and their history) but say clearly why they stopped syncing."""
    message = vanished_subscription_message()
    users = SyncedUser.objects.filter(subscription__in=subscriptions).select_related("integration")
    for user in users:
        user.state = SyncedUser.State.ERROR
        user.last_error = message
        user.save(update_fields=["state", "last_error"])
        Activity.record(
            user.integration,
            "subscription_removed",
            actor=actors.SYSTEM,  # the directory import
            level=Activity.Level.ERROR,
            synced_user=user,
        )


@receiver(subscriptions_reactivated)
def resume_users_of_returned_subscriptions(sender, company, subscriptions, **kwargs):
    users = list(
        SyncedUser.objects.filter(
            subscription__in=subscriptions, state=SyncedUser.State.ERROR
        ).select_related("integration")
    )
    for user in users:
        user.state = SyncedUser.State.PENDING
        user.last_error = ""
        user.save(update_fields=["state", "last_error"])
        Activity.record(
            user.integration, "subscription_restored", actor=actors.SYSTEM, synced_user=user
        )
    # Many subscriptions may come back at once: subscribed and synced in bulk.
    tasks.start_syncing(SyncedUser.objects.filter(pk__in=[user.pk for user in users]))
