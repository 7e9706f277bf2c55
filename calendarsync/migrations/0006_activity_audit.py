"""The activity log becomes an audit trail: who (actor), what it concerns, what changed, and
messages stored as message ids with parameters (translated when shown).

Existing rows keep their text as it was written: message id "legacy", the text as parameter,
no actor (nobody knows who did it then), and a kind read from their event.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# The events of rows written before this migration → the log filter's kinds.
LEGACY_KINDS = {
    "connected": "connection",
    "consent_granted": "connection",
    "consent_failed": "connection",
    "consent_revoked": "connection",
    "credentials_rejected": "connection",
    "permissions_removed": "connection",
    "removing": "connection",
    "integration_removed": "connection",
    "paused": "settings",
    "resumed": "settings",
    "user_removed": "users",
    "subscription_removed": "users",
    "subscription_restored": "users",
}
BATCH = 2000


def to_message_ids(apps, schema_editor):
    Activity = apps.get_model("calendarsync", "Activity")
    rows = Activity.objects.order_by("pk").only("pk", "event", "message", "synced_user_id")
    batch = []
    for row in rows.iterator(chunk_size=BATCH):
        row.message_id = "legacy"
        row.params = {"text": row.message}
        row.kind = LEGACY_KINDS.get(row.event, "sync")
        row.actor_kind = ""
        row.subject = "user" if row.synced_user_id else ""
        batch.append(row)
        if len(batch) >= BATCH:
            Activity.objects.bulk_update(
                batch, ["message_id", "params", "kind", "actor_kind", "subject"]
            )
            batch = []
    if batch:
        Activity.objects.bulk_update(
            batch, ["message_id", "params", "kind", "actor_kind", "subject"]
        )


def to_messages(apps, schema_editor):
    """Back to one text column: a legacy row's text, else what its parameters say."""
    Activity = apps.get_model("calendarsync", "Activity")
    batch = []
    for row in Activity.objects.order_by("pk").iterator(chunk_size=BATCH):
        params = row.params or {}
        row.message = str(params.get("text") or params.get("error") or row.message_id)
        batch.append(row)
        if len(batch) >= BATCH:
            Activity.objects.bulk_update(batch, ["message"])
            batch = []
    if batch:
        Activity.objects.bulk_update(batch, ["message"])


class Migration(migrations.Migration):
    dependencies = [
        ("calendarsync", "0005_integration_name_printable"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="activity",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="signed-in user",
            ),
        ),
        migrations.AddField(
            model_name="activity",
            name="actor_kind",
            field=models.CharField(
                blank=True,
                choices=[
                    ("admin", "administrator"),
                    ("staff", "Telenor support"),
                    ("outlook", "Outlook"),
                    ("microsoft", "Microsoft"),
                    ("system", "the system"),
                ],
                default="system",
                max_length=10,
                verbose_name="actor",
            ),
        ),
        migrations.AddField(
            model_name="activity",
            name="actor_label",
            field=models.CharField(blank=True, max_length=254, verbose_name="actor's email"),
        ),
        migrations.AddField(
            model_name="activity",
            name="changes",
            field=models.JSONField(blank=True, default=list, verbose_name="changes"),
        ),
        migrations.AddField(
            model_name="activity",
            name="kind",
            field=models.CharField(
                choices=[
                    ("connection", "Connection"),
                    ("settings", "Settings"),
                    ("rules", "Sync rules"),
                    ("users", "Users"),
                    ("sync", "Sync"),
                ],
                default="sync",
                max_length=20,
                verbose_name="kind",
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="activity",
            name="message_id",
            field=models.CharField(default="legacy", max_length=50, verbose_name="message id"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="activity",
            name="params",
            field=models.JSONField(blank=True, default=dict, verbose_name="message parameters"),
        ),
        migrations.AddField(
            model_name="activity",
            name="subject",
            field=models.CharField(
                blank=True,
                choices=[
                    ("integration", "integration"),
                    ("setting", "setting"),
                    ("rule", "rule"),
                    ("user", "user"),
                ],
                max_length=20,
                verbose_name="concerns",
            ),
        ),
        migrations.AddField(
            model_name="activity",
            name="subject_label",
            field=models.CharField(blank=True, max_length=300, verbose_name="concerns (name)"),
        ),
        migrations.RunPython(to_message_ids, to_messages, elidable=False),
        # A default first, so that migrating back can add the column to existing rows.
        migrations.AlterField(
            model_name="activity",
            name="message",
            field=models.TextField(blank=True, default="", verbose_name="message"),
        ),
        migrations.RemoveField(model_name="activity", name="message"),
        migrations.AddIndex(
            model_name="activity",
            index=models.Index(
                fields=["integration", "kind", "-created_at"], name="activity_integration_kind"
            ),
        ),
    ]
