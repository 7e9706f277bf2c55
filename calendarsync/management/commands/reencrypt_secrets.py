"""After a new key was put first in MSS_ENCRYPTION_KEYS: encrypt every stored secret again with
it, so the old key can be removed. Idempotent; prints counts only, never a secret."""

from django.core.management.base import BaseCommand

from calendarsync.models import Integration, MailboxSubscription

SECRETS = [(Integration, "ews_password"), (MailboxSubscription, "client_state")]
BATCH = 500


class Command(BaseCommand):
    help = "Encrypt every stored secret again with the newest MSS_ENCRYPTION_KEYS key."

    def handle(self, *args, **options):
        for model, field in SECRETS:
            # Read with any configured key (the field decrypts), written with the newest.
            rows = model.objects.exclude(**{field: ""}).only("pk", field).order_by("pk")
            done = 0
            batch = []
            for row in rows.iterator(chunk_size=BATCH):
                batch.append(row)
                if len(batch) == BATCH:
                    done += model.objects.bulk_update(batch, [field])
                    batch = []
            done += model.objects.bulk_update(batch, [field]) if batch else 0
            self.stdout.write(f"{model._meta.label}.{field}: {done} encrypted with the newest key")
