from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from calendarsync.activity_messages import render


def test_it_has_a_migration_for_every_model_change(db):
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out)
    except SystemExit as exc:
        raise AssertionError(f"missing migrations:\n{out.getvalue()}") from exc


@pytest.mark.django_db(transaction=True)
def test_0006_turns_old_activity_texts_into_legacy_entries_shown_as_they_were():
    """Rows from before the audit trail keep their text (as a "legacy" message), get a kind
    from their event and no actor; migrating back restores the text column."""
    before, after = (
        [("calendarsync", "0005_integration_name_printable")],
        [("calendarsync", "0006_activity_audit")],
    )
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        company = old.get_model("onex", "Company").objects.create(
            name="Demo AB", org_number="556000-0001", onex_id="demo-ab"
        )
        integration = old.get_model("calendarsync", "Integration").objects.create(
            company=company, kind="graph", name="Exchange Online"
        )
        old_activity = old.get_model("calendarsync", "Activity")
        for event, text in [
            ("consent_granted", "Connected to the Microsoft 365 sandbox tenant."),
            ("synced", "3 frånvaroposter skrivna"),
        ]:
            old_activity.objects.create(
                company=company, integration=integration, event=event, message=text
            )

        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new = executor.loader.project_state(after).apps.get_model("calendarsync", "Activity")
        rows = list(
            new.objects.order_by("id").values_list("message_id", "params", "kind", "actor_kind")
        )
        assert rows == [
            (
                "legacy",
                {"text": "Connected to the Microsoft 365 sandbox tenant."},
                "connection",
                "",
            ),
            ("legacy", {"text": "3 frånvaroposter skrivna"}, "sync", ""),
        ]
        assert render("legacy", rows[1][1]) == "3 frånvaroposter skrivna"

        executor = MigrationExecutor(connection)
        executor.migrate(before)
        back = executor.loader.project_state(before).apps.get_model("calendarsync", "Activity")
        assert list(back.objects.order_by("id").values_list("message", flat=True)) == [
            "Connected to the Microsoft 365 sandbox tenant.",
            "3 frånvaroposter skrivna",
        ]
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
