from celery import shared_task

from . import retention


@shared_task
def purge_expired_bookings():
    return retention.purge_expired_bookings()
