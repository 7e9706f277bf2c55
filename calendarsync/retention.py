from datetime import timedelta

from django.utils import timezone

from .models import Booking

RETENTION = timedelta(days=30)


def purge_expired_bookings(now=None) -> int:
    """Delete bookings that ended more than 30 days ago; returns how many went."""
    cutoff = (now or timezone.now()) - RETENTION
    deleted, _ = Booking.objects.filter(end__lt=cutoff).delete()
    return deleted
