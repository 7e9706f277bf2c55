"""Connect Demo Kommun's Exchange On Prem integration to the EWS sandbox (idempotent).

`make run` calls it once the sandboxes listen and the directory is imported: the integration
gets the sandbox's EWS address and service account, Demo Kommun's One X people become synced
users, and Testa anslutningen runs as an admin would run it; only a passing test connects it,
and the worker then subscribes the mailboxes and syncs them.
"""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from calendarsync import actors, lifecycle, providers, tasks
from calendarsync.models import Integration, SyncedUser
from onex.models import Company

# The EWS sandbox's service account (sandbox/ews/server.py); product code never imports it.
SANDBOX_USERNAME = "DEMO\\telenor_mss_user"
SANDBOX_PASSWORD = "Sandbox-Lösen-1"


class Command(BaseCommand):
    help = "Connect Demo Kommun's Exchange On Prem integration to the EWS sandbox (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="https://127.0.0.1:8012/EWS/Exchange.asmx")
        parser.add_argument("--company", default="demo-kommun", help="the company's One X id")
        parser.add_argument("--wait", type=float, default=30, help="seconds to wait for EWS")

    def handle(self, *args, **options):
        company = Company.objects.filter(onex_id=options["company"]).first()
        if company is None:
            raise CommandError("Demo Kommun does not exist yet: run `manage.py demo_setup` first.")
        with transaction.atomic():
            integration = self._integration(company, options["url"])
            self._users(company, integration)
        first = integration.users.order_by("email").values_list("email", flat=True).first()
        if not first:
            raise CommandError("Demo Kommun has no One X people yet: run import_directory first.")
        steps = self._test(integration, first, options["wait"])
        for step in steps:
            mark = "ok" if step.ok else ("note" if step.warning else "FAILED")
            self.stdout.write(f"  {mark:6} {step.name}: {step.detail}")
        if not all(step.ok or step.warning for step in steps):
            raise CommandError("Testa anslutningen did not pass (see above).")
        if not lifecycle.connected(integration, actor=actors.SYSTEM):
            # Connected before: start the mailboxes added since (the others already sync).
            tasks.start_syncing(integration.users.filter(mailbox_subscription__isnull=True))
        self.stdout.write(
            f"Exchange On Prem for {company.name} is connected to the EWS sandbox "
            f"({integration.users.count()} users)."
        )

    def _integration(self, company, url):
        integration = company.integrations.filter(kind=Integration.Kind.EWS).order_by("id").first()
        if integration is None:
            integration = Integration(
                company=company,
                kind=Integration.Kind.EWS,
                name="Exchange On Prem",
                status=Integration.Status.UNVERIFIED,
            )
        integration.ews_url = url
        integration.ews_username = SANDBOX_USERNAME
        integration.ews_password = SANDBOX_PASSWORD
        integration.save()
        return integration

    def _users(self, company, integration):
        for subscription in company.subscriptions.filter(active=True).order_by("email"):
            SyncedUser.objects.get_or_create(
                integration=integration,
                email=subscription.email,
                defaults={"subscription": subscription},
            )

    def _test(self, integration, mailbox, wait):
        """The sandbox may still be starting: try again until `wait` has passed."""
        deadline = time.monotonic() + wait
        while True:
            steps = providers.provider_for(integration).test_connection(mailbox)
            if all(step.ok or step.warning for step in steps) or time.monotonic() > deadline:
                return steps
            time.sleep(1)
