"""Connect Demo AB's Exchange Online integration to the M365 sandbox's demo tenant (idempotent).

`make run` calls it once the sandboxes listen: the integration is confirmed with a real token
for the tenant (as the consent callback does) and follows the tenant's group "Kalenderkoppling"
(Katalog Synk): one membership run makes its members with a One X subscription synced users,
each with a first sync; the worker subscribes their mailboxes to change notifications.
"""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from calendarsync import actors, lifecycle, membership, providers, tasks
from calendarsync.models import FollowedGroup, Integration
from calendarsync.providers.base import ProviderError
from calendarsync.providers.graph.client import confirm_tenant
from onex.models import Company

# The M365 sandbox's Demo AB tenant (sandbox/m365/demo.py); product code never imports it.
DEMO_TENANT = "6d656d6f-0000-4000-8000-0000000000ab"
DEMO_GROUP = "Kalenderkoppling"


class Command(BaseCommand):
    help = "Connect Demo AB's Exchange Online integration to the M365 sandbox (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", default=DEMO_TENANT)
        parser.add_argument("--company", default="demo-ab", help="the company's One X id")
        parser.add_argument("--wait", type=float, default=30, help="seconds to wait for sign-in")

    def handle(self, *args, **options):
        company = Company.objects.filter(onex_id=options["company"]).first()
        if company is None:
            raise CommandError("Demo AB does not exist yet: run `manage.py demo_setup` first.")
        self._confirm(options["tenant"], options["wait"])
        with transaction.atomic():
            integration = self._integration(company, options["tenant"])
            added = self._users(company, integration)
        self.stdout.write(
            f"Exchange Online for {company.name} is connected to the sandbox tenant "
            f"({integration.users.count()} users, {len(added)} new)."
        )

    def _confirm(self, tenant, wait):
        deadline = time.monotonic() + wait
        while True:
            try:
                confirm_tenant(tenant)
                return
            except ProviderError as exc:
                if exc.permanent or time.monotonic() > deadline:
                    raise CommandError(f"The M365 sandbox did not issue a token: {exc}") from exc
                time.sleep(1)

    def _integration(self, company, tenant):
        graph = company.integrations.filter(kind=Integration.Kind.GRAPH).order_by("id")
        integration = graph.first() or Integration(
            company=company, kind=Integration.Kind.GRAPH, name="Exchange Online"
        )
        if integration.pk is None:
            integration.save()
        if integration.tenant_id != tenant or integration.status != Integration.Status.CONNECTED:
            lifecycle.connected(
                integration,
                actor=actors.SYSTEM,
                event="consent_granted",
                message_id="sandbox_connected",
                tenant_id=tenant,
            )
        return integration

    def _users(self, company, integration):
        """Follow the demo group, found by name as an admin's search finds it, and run it."""
        found = providers.groups_for(integration).find_groups(DEMO_GROUP)
        group = next((group for group in found if group.name == DEMO_GROUP), None)
        if group is None:
            raise CommandError(f"The sandbox tenant has no group {DEMO_GROUP}.")
        integration.user_source = Integration.UserSource.GROUPS
        integration.save(update_fields=["user_source", "updated_at"])
        FollowedGroup.objects.get_or_create(
            integration=integration, provider_id=group.provider_id, defaults={"name": group.name}
        )
        outcome = membership.run(integration)
        if outcome.error:
            raise CommandError(f"The demo group could not be read: {outcome.error}")
        tasks.start_syncing(integration.users.filter(pk__in=outcome.added_ids))
        return outcome.added_ids
