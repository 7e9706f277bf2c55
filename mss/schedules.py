"""Every periodic task, declared once. `manage.py install_schedules` puts them into
django-celery-beat's tables (creating what is missing, never overwriting an ops edit)."""

from celery.schedules import crontab

PERIODIC_TASKS = {
    "Purge bookings that ended more than 30 days ago": {
        "task": "calendarsync.tasks.purge_expired_bookings",
        "schedule": crontab(minute=15, hour=3),
    },
    # The day's read of every mailbox as the window's leading day moves in (Stockholm time):
    # the audit reads each calendar, writes the new day's absences and repairs any drift.
    "Audit One X against the calendars as the next day moves in (00:00)": {
        "task": "calendarsync.tasks.audit_all_integrations",
        "schedule": crontab(minute=0, hour=0),
    },
    "Request again the syncs whose run was lost (every minute)": {
        "task": "calendarsync.tasks.sweep_sync_requests",
        "schedule": crontab(minute="*"),
    },
    # The mailboxes the audit did not read (skipped, or its run failed): six steps five minutes
    # apart, each a sixth of the mailboxes (calendarsync/daily.py).
    "Reconcile the mailboxes the midnight audit did not read (01:00-01:30)": {
        "task": "calendarsync.tasks.reconcile_all_mailboxes",
        "schedule": crontab(minute="0-25/5", hour=1),
    },
    "Reconcile the mailboxes whose daily read was missed (hourly)": {
        "task": "calendarsync.tasks.reconcile_overdue_mailboxes",
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
    # Katalog Synk: the users lists that follow Entra ID or distribution groups.
    "Sync users from their groups (every 15 minutes)": {
        "task": "calendarsync.tasks.follow_all_groups",
        "schedule": crontab(minute="*/15"),
    },
}

# Tasks that no longer exist: install_schedules removes their beat entries.
RETIRED_TASKS = ["calendarsync.tasks.renew_graph_subscriptions"]
# Entries whose schedule changed under a new name (install_schedules never edits an entry, so
# the old one is removed): the hourly reconcile of every mailbox, the audit at 02:45.
RETIRED_ENTRIES = [
    "Reconcile every synced mailbox with One X",
    "Audit One X against the calendars and repair any drift (daily)",
]
