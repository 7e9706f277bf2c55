"""Microsoft's own Graph SDK (msgraph-sdk) against the Microsoft 365 sandbox.

Runs in a virtualenv of its own (msgraph-sdk is no dependency of the product), started by
tests/tools/record_msgraph_sdk.py, which also starts the sandbox and records what this sends.
By hand:

    python3 -m venv /tmp/msgraph-venv && /tmp/msgraph-venv/bin/pip install msgraph-sdk
    /tmp/msgraph-venv/bin/python tests/tools/msgraph_sdk_client.py --graph https://127.0.0.1:8011 \\
        --ca var/sandbox/m365-ca.pem --tenant <id> --mailbox anna.andersson@demo.se \\
        --notification-url https://…/hook --property-id "String {…} Name cecp-…" --event-id …

It reads users, calendarView with $select (following @odata.nextLink), events with the add-in's
extended property ($expand=singleValueExtendedProperties($filter=…)), one event, and creates,
renews, reauthorizes and deletes a subscription; it prints what it got as JSON and exits non-zero
on the first failure.
"""

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta

import httpx
from azure.identity import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.subscription import Subscription
from msgraph.generated.users.item.calendar_view.calendar_view_request_builder import (
    CalendarViewRequestBuilder,
)
from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder
from msgraph.generated.users.item.events.item.event_item_request_builder import (
    EventItemRequestBuilder,
)
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core import GraphClientFactory
from msgraph_core.tasks.page_iterator import PageIterator

SELECT = ["id", "start", "end", "isAllDay", "showAs", "sensitivity", "isCancelled", "type"]
SELECT += ["seriesMasterId", "responseStatus", "categories", "subject"]


def client_for(args) -> GraphServiceClient:
    host = args.graph.split("://", 1)[1].rstrip("/")
    credential = ClientSecretCredential(
        args.tenant,
        args.client_id,
        args.client_secret,
        authority=host,  # https://<host>/<tenant>, the sandbox's sign-in side
        disable_instance_discovery=True,
        connection_verify=args.ca,
    )
    auth = AzureIdentityAuthenticationProvider(
        credential,
        scopes=["https://graph.microsoft.com/.default"],
        allowed_hosts=[host.split(":")[0]],
    )
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=args.ca, trust_env=False, timeout=30)
    )
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = f"{args.graph.rstrip('/')}/v1.0"
    return GraphServiceClient(request_adapter=adapter)


async def run(args) -> dict:
    graph = client_for(args)
    found: dict = {}
    mailbox = graph.users.by_user_id(args.mailbox)

    users = await graph.users.get(
        RequestConfiguration(
            query_parameters=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                select=["id", "mail", "userPrincipalName", "displayName"], top=5
            )
        )
    )
    found["users"] = [u.mail for u in users.value]

    start = datetime.fromisoformat(args.start) if args.start else datetime.now(UTC)
    start = start.replace(microsecond=0)
    view_config = RequestConfiguration(
        query_parameters=CalendarViewRequestBuilder.CalendarViewRequestBuilderGetQueryParameters(
            start_date_time=start.isoformat(),
            end_date_time=(start + timedelta(days=14)).isoformat(),
            select=SELECT,
        )
    )
    view_config.headers.add("Prefer", 'outlook.timezone="UTC"')
    view_config.headers.add("Prefer", "odata.maxpagesize=10")
    first_page = await mailbox.calendar_view.get(view_config)
    instances = []
    pages = PageIterator(first_page, graph.request_adapter)
    await pages.iterate(lambda event: instances.append(event) or True)
    found["calendarView"] = len(instances)

    expand = f"singleValueExtendedProperties($filter=id eq '{args.property_id}')"
    events = await mailbox.events.get(
        RequestConfiguration(
            query_parameters=EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
                select=["id", "subject", "start", "end"], expand=[expand], top=50
            )
        )
    )
    found["eventsWithProperty"] = [e.id for e in events.value if e.single_value_extended_properties]
    one = await mailbox.events.by_event_id(args.event_id).get(
        RequestConfiguration(
            query_parameters=EventItemRequestBuilder.EventItemRequestBuilderGetQueryParameters(
                select=["id", "start"], expand=[expand]
            )
        )
    )
    found["eventProperty"] = one.single_value_extended_properties[0].value

    created = await graph.subscriptions.post(
        Subscription(
            change_type="created,updated,deleted",
            notification_url=args.notification_url,
            lifecycle_notification_url=args.notification_url,
            resource=f"/users/{args.mailbox}/events",
            expiration_date_time=datetime.now(UTC) + timedelta(minutes=60),
            client_state="msgraph-sdk-check",
        )
    )
    subscription = graph.subscriptions.by_subscription_id(created.id)
    renewed = await subscription.patch(
        Subscription(expiration_date_time=datetime.now(UTC) + timedelta(minutes=120))
    )
    await subscription.reauthorize.post()
    await subscription.delete()
    found["subscription"] = {"created": created.id, "renewedTo": str(renewed.expiration_date_time)}
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", required=True, help="the sandbox's base URL (https)")
    parser.add_argument("--ca", required=True, help="the sandbox's CA file")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--client-id", default="00000000-0000-0000-0000-0000000000aa")
    parser.add_argument("--client-secret", default="sandbox-client-secret")
    parser.add_argument("--mailbox", required=True)
    parser.add_argument("--notification-url", required=True)
    parser.add_argument("--property-id", required=True)
    parser.add_argument("--event-id", required=True)
    parser.add_argument("--start", help="where the 14-day calendarView starts (ISO; now)")
    args = parser.parse_args(argv)
    try:
        found = asyncio.run(run(args))
    except Exception as exc:  # noqa: BLE001 - the check reports any failure and exits non-zero
        print(json.dumps({"failed": f"{type(exc).__name__}: {exc}"}), flush=True)
        raise
    print(json.dumps(found), flush=True)


if __name__ == "__main__":
    sys.exit(main())
