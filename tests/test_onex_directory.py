"""The directory import: One X subscriptions and absence reasons → the onex models."""

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from calendarsync.models import Activity, SyncedUser
from calendarsync.receivers import vanished_subscription_message
from mss.schedules import PERIODIC_TASKS
from onex import directory, tasks
from onex.models import AbsenceReason, Subscription

DEMO_IDS = ["sub-anna", "sub-bjorn", "sub-cecilia", "sub-david", "sub-eva", "sub-fredrik"]


@pytest.fixture
def imported(company, onex_sandbox):
    result = directory.import_company(company)
    assert result.ok, result.error
    return result


def test_it_creates_the_demo_subscriptions_and_reasons(company, imported):
    subs = {s.onex_id: s for s in company.subscriptions.all()}
    assert sorted(subs) == DEMO_IDS
    anna = subs["sub-anna"]
    assert (anna.email, anna.display_name, anna.extension, anna.msisdn) == (
        "anna.andersson@demo.se",
        "Anna Andersson",
        "201",
        "+46701234501",
    )
    assert (anna.has_diversion, anna.has_open_diversion, anna.is_admin) == (True, True, True)
    assert not subs["sub-eva"].has_diversion
    reasons = {r.code: r for r in company.absence_reasons.all()}
    assert len(reasons) == 10
    assert (reasons["GATT_FOR_DAGEN"].label_sv, reasons["GATT_FOR_DAGEN"].label_en) == (
        "Gått för dagen",
        "Gone for the day",
    )
    assert (imported.created, imported.reasons_created) == (6, 10)


def test_a_second_import_changes_nothing(company, imported):
    again = directory.import_company(company)
    assert (again.created, again.updated, again.deactivated) == (0, 0, 0)
    assert (again.reasons_created, again.reasons_updated, again.reasons_deactivated) == (0, 0, 0)
    assert company.subscriptions.count() == 6


def test_it_updates_what_changed_in_one_x(company, imported, onex_sandbox):
    onex_sandbox.put_subscription(
        "demo-ab",
        "sub-eva",
        email="Eva.Ek@Demo.se",
        displayName="Eva Ek-Lund",
        extension="215",
        features={"diversion": True},
    )
    onex_sandbox.put_reason("demo-ab", "LUNCH", "Lunch", "Lunch break", diversionAllowed=False)
    result = directory.import_company(company)
    eva = company.subscriptions.get(onex_id="sub-eva")
    assert (eva.display_name, eva.extension, eva.email, eva.has_diversion) == (
        "Eva Ek-Lund",
        "215",
        "eva.ek@demo.se",
        True,
    )
    lunch = company.absence_reasons.get(code="LUNCH")
    assert (lunch.label_en, lunch.diversion_allowed) == ("Lunch break", False)
    assert (result.updated, result.reasons_updated) == (1, 1)


def test_it_deactivates_a_vanished_subscription_and_flags_its_synced_user(
    company, imported, onex_sandbox, integration
):
    david = company.subscriptions.get(onex_id="sub-david")
    user = SyncedUser.objects.create(
        integration=integration, subscription=david, email=david.email, state="ok"
    )
    onex_sandbox.delete_subscription("demo-ab", "sub-david")
    result = directory.import_company(company)
    david.refresh_from_db()
    user.refresh_from_db()
    assert result.deactivated == 1
    assert david.active is False  # kept, not deleted
    assert user.state == SyncedUser.State.ERROR
    assert user.last_error == vanished_subscription_message()
    with translation.override("en"):  # the msgid; the UI shows it in Swedish
        assert "One X subscription no longer exists" in vanished_subscription_message()
    activity = Activity.objects.get(event="subscription_removed")
    assert (activity.synced_user, activity.level) == (user, Activity.Level.ERROR)
    assert company.subscriptions.filter(active=True).count() == 5


def test_it_reactivates_a_subscription_that_came_back(
    company, imported, onex_sandbox, integration, django_capture_on_commit_callbacks
):
    david = company.subscriptions.get(onex_id="sub-david")
    user = SyncedUser.objects.create(integration=integration, subscription=david, email=david.email)
    onex_sandbox.delete_subscription("demo-ab", "sub-david")
    directory.import_company(company)
    onex_sandbox.put_subscription(
        "demo-ab", "sub-david", email="david.dahl@demo.se", displayName="David Dahl"
    )
    with django_capture_on_commit_callbacks() as callbacks:
        result = directory.import_company(company)
    david.refresh_from_db()
    user.refresh_from_db()
    assert (result.reactivated, david.active) == (1, True)
    assert (user.state, user.last_error) == (SyncedUser.State.PENDING, "")
    # A sync and a new change-notification subscription are on their way.
    assert user.sync_requested_at is not None and len(callbacks) == 2


def test_it_deactivates_a_vanished_absence_reason(company, imported, onex_sandbox):
    onex_sandbox.delete_reason("demo-ab", "UTBILDNING")
    onex_sandbox.put_reason("demo-ab", "LEDIG", "Ledig", "Day off", active=False)
    result = directory.import_company(company)
    inactive = set(company.absence_reasons.filter(active=False).values_list("code", flat=True))
    assert inactive == {"UTBILDNING", "LEDIG"}
    assert AbsenceReason.objects.filter(company=company).count() == 10
    assert (result.reasons_deactivated, result.reasons_updated) == (1, 1)


def test_it_pages_through_a_large_directory(other_company, onex_sandbox):
    people = [
        {"subscriptionId": f"s{n:04}", "email": f"p{n}@annat.se", "displayName": f"P {n}"}
        for n in range(650)
    ]
    onex_sandbox.put_company("annat-ab", "Annat AB", subscriptions=people)
    result = directory.import_company(other_company)
    assert result.created == 650
    assert other_company.subscriptions.count() == 650


def test_a_failing_company_does_not_stop_the_others(company, other_company, onex_sandbox):
    # Annat AB is unknown to One X: its import fails, Demo AB's still happens.
    results = {r.company.onex_id: r for r in directory.import_all()}
    assert "company_not_found" in results["annat-ab"].error
    assert results["demo-ab"].ok and results["demo-ab"].created == 6
    assert other_company.subscriptions.count() == 0


def test_a_failure_mid_listing_changes_nothing(other_company, onex_sandbox):
    people = [
        {"subscriptionId": f"s{n:03}", "email": f"p{n}@annat.se", "displayName": f"P {n}"}
        for n in range(450)
    ]
    onex_sandbox.put_company("annat-ab", "Annat AB", subscriptions=people)
    assert directory.import_company(other_company).created == 450
    onex_sandbox.delete_subscription("annat-ab", "s000")
    onex_sandbox.knobs(fail_next=[0, 500])  # page 1 arrives, page 2 fails for good
    result = directory.import_company(other_company)
    assert "500" in result.error
    assert other_company.subscriptions.get(onex_id="s000").active is True


def test_it_survives_a_flaky_one_x(company, onex_sandbox):
    onex_sandbox.knobs(fail_next=[503, 429], retry_after=0)
    result = directory.import_company(company)
    assert result.ok and result.created == 6


def test_the_task_imports_every_company(company, onex_sandbox):
    summary = tasks.import_directory()
    assert summary == [
        "Demo AB: subscriptions 6 new, 0 updated, 0 deactivated, 0 back; "
        "absence reasons 10 new, 0 updated, 0 deactivated; memberships 0 removed"
    ]
    assert Subscription.objects.filter(company=company).count() == 6


def test_the_task_is_on_the_beat_schedule():
    tasks_scheduled = [spec["task"] for spec in PERIODIC_TASKS.values()]
    assert "onex.tasks.import_directory" in tasks_scheduled


def test_the_command_prints_a_summary(company, onex_sandbox, capsys):
    call_command("import_directory", "demo-ab")
    assert "Demo AB: subscriptions 6 new" in capsys.readouterr().out


def test_the_command_fails_loudly(company, onex_sandbox):
    with pytest.raises(CommandError, match="No company with One X id nope"):
        call_command("import_directory", "nope")
    onex_sandbox.knobs(fail_next=[500])
    with pytest.raises(CommandError, match="1 of 1 companies failed"):
        call_command("import_directory")
