"""Signals the onex app sends; other apps connect to them (onex imports none of them)."""

from django.dispatch import Signal

# Sent by the directory import (sender=Company, company=<Company>, subscriptions=[Subscription])
# after those subscriptions vanished from One X and were deactivated; inside its transaction.
subscriptions_deactivated = Signal()

# Sent with the same arguments when deactivated subscriptions came back.
subscriptions_reactivated = Signal()
