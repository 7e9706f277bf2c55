from celery import shared_task

from . import directory


@shared_task
def import_directory():
    """Mirror every company's One X directory (subscriptions and absence reasons)."""
    return [str(result) for result in directory.import_all()]
