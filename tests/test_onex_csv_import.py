"""`manage.py import_users_csv`: Telenor staff add a customer's user list to an integration."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from calendarsync.models import Integration, SyncedUser
from onex.models import Subscription


@pytest.fixture
def subscriptions(company, other_company):
    rows = [
        (company, "s1", "anna@demo.se", True),
        (company, "s2", "bo@demo.se", True),
        (company, "s3", "gone@demo.se", False),
        (company, "s4", "taken@demo.se", True),
        (other_company, "x1", "stranger@annat.se", True),
    ]
    return {
        email: Subscription.objects.create(company=c, onex_id=i, email=email, active=active)
        for c, i, email, active in rows
    }


def run(*args):
    with translation.override("en"):
        out = StringIO()
        try:
            call_command("import_users_csv", *args, stdout=out)
        except CommandError as error:
            return out.getvalue(), str(error)
        return out.getvalue(), None


def test_it_adds_every_good_line_and_says_why_the_others_failed(
    tmp_path, integration, subscriptions, django_capture_on_commit_callbacks
):
    other = Integration.objects.create(company=integration.company, kind="ews", name="On prem")
    SyncedUser.objects.create(
        integration=other, subscription=subscriptions["taken@demo.se"], email="taken@demo.se"
    )
    path = tmp_path / "users.csv"
    path.write_text(
        "\ufeffE-post;Namn\n"
        "Anna@Demo.se;Anna Andersson\n"
        "bo@demo.se;Bo Ek;Ekonomi\n"
        "\n"
        "not-an-address\n"
        "nobody@demo.se\n"
        "gone@demo.se\n"
        "taken@demo.se\n"
        "stranger@annat.se\n",
        encoding="utf-8",
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        out, error = run(str(integration.code), str(path))
    lines = out.splitlines()
    assert lines[0] == "line 2: anna@demo.se — Added"
    assert lines[1] == "line 3: bo@demo.se — Added"
    assert lines[2].startswith("line 5: not-an-address — FAILED: Enter a valid email")
    assert lines[3].startswith("line 6: nobody@demo.se — FAILED: No One X subscription")
    assert lines[4].startswith("line 7: gone@demo.se — FAILED: ") and "deactivated" in lines[4]
    assert lines[5].startswith("line 8: taken@demo.se — FAILED: ") and "On prem" in lines[5]
    assert (
        lines[6].startswith("line 9: stranger@annat.se — FAILED: ")
        # Another company's address gets the unknown address's answer (no address oracle).
        and "No One X subscription in the company has the address" in lines[6]
    )
    assert lines[7] == "Demo AB / Exchange Online: 2 added, 5 failed"
    assert error == "5 of 7 lines failed; see the report above"
    added = integration.users.order_by("email")
    assert [(u.email, u.subscription.onex_id, u.state) for u in added] == [
        ("anna@demo.se", "s1", "pending"),
        ("bo@demo.se", "s2", "pending"),
    ]
    # One bulk request queues the first sync of both new users (run together, one read), one
    # more their change-notification subscriptions.
    assert len(callbacks) == 2
    assert all(user.sync_requested_at is not None for user in added)


def test_a_clean_file_exits_without_error_and_a_rerun_adds_nobody_twice(
    tmp_path, integration, subscriptions
):
    path = tmp_path / "users.csv"
    path.write_text("anna@demo.se\nbo@demo.se\n", encoding="utf-8")
    out, error = run(str(integration.pk), str(path))
    assert error is None and out.splitlines()[-1].endswith("2 added, 0 failed")
    out, error = run(str(integration.pk), str(path))
    assert integration.users.count() == 2
    assert error == "2 of 2 lines failed; see the report above"
    assert "FAILED" in out.splitlines()[0]


def test_a_dry_run_checks_but_adds_nobody(tmp_path, integration, subscriptions):
    path = tmp_path / "users.csv"
    path.write_text("anna@demo.se\nnobody@demo.se\n", encoding="utf-8")
    out, error = run(str(integration.code), str(path), "--dry-run")
    assert "1 would be added, 1 failed" in out
    assert error is not None
    assert integration.users.count() == 0


def test_it_refuses_an_unknown_integration_or_file(tmp_path, integration):
    assert run("999999", str(tmp_path / "x.csv"))[1] == "No integration 999999"
    assert "neither an integration id" in run("demo", "x.csv")[1]
    assert run(str(integration.code), str(tmp_path / "missing.csv"))[1].startswith("Cannot read")
