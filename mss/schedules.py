"""Every periodic task, declared once. `manage.py install_schedules` puts them into
django-celery-beat's tables (creating what is missing, never overwriting an ops edit)."""

from celery.schedules import crontab

PERIODIC_TASKS = {
    "Purge bookings that ended more than 30 days ago": {
        "task": "calendarsync.tasks.purge_expired_bookings",
        "schedule": crontab(minute=15, hour=3),
    },
    "Audit One X against the calendars and repair any drift (daily)": {
        "task": "calendarsync.tasks.audit_all_integrations",
        "schedule": crontab(minute=45, hour=2),
    },
    "Request again the syncs whose run was lost (every minute)": {
        "task": "calendarsync.tasks.sweep_sync_requests",
        "schedule": crontab(minute="*"),
    },
    "Reconcile every synced mailbox with One X": {
        "task": "calendarsync.tasks.reconcile_all_mailboxes",
        "schedule": crontab(minute=40),
    },
    "Renew change-notification subscriptions": {
        "task": "calendarsync.tasks.renew_subscriptions",
        "schedule": crontab(minute="*/30"),
    },
    "Import the One X directory (subscriptions and absence reasons)": {
        "task": "onex.tasks.import_directory",
        "schedule": crontab(minute="*/15"),
    },
}

# Tasks that no longer exist: install_schedules removes their beat entries.
RETIRED_TASKS = ["calendarsync.tasks.renew_graph_subscriptions"]
