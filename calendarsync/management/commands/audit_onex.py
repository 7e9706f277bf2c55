"""Run the One X audit now (what the daily task does), for every syncing integration or one."""

import uuid

from django.core.management.base import BaseCommand, CommandError

from calendarsync import audit
from calendarsync.models import Integration


class Command(BaseCommand):
    help = (
        "Read One X's entries back and repair any difference from the calendars: missing, "
        "stale and orphaned entries, and Booking rows. Every syncing integration, or one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--integration", metavar="CODE", help="the integration's code (UUID)")

    def handle(self, *args, integration=None, **options):
        integrations = Integration.objects.select_related("company").order_by("pk")
        if integration:
            try:
                code = uuid.UUID(integration)
            except ValueError:
                raise CommandError(
                    f"--integration: not an integration code: {integration}"
                ) from None
            integrations = integrations.filter(code=code)
            if not integrations:
                raise CommandError(f"--integration: no integration {integration}")
        else:
            integrations = integrations.filter(active=True, status__in=Integration.SYNCING)
        for row in integrations:
            result = audit.audit_integration(row)
            counts = " ".join(f"{name}={value}" for name, value in result.counts.as_dict().items())
            self.stdout.write(
                f"{row.company.name} / {row.name} ({row.code}): {result.outcome} {counts}"
            )
