"""bench_groups at a small size: it starts the M365 sandbox, runs Katalog Synk twice and says
what each run did; everything it stored is rolled back."""

import re
from io import StringIO

from django.core.management import call_command

from calendarsync.models import FollowedGroup, Integration, SyncedUser
from onex.models import Subscription

LINE = re.compile(
    r"(?P<label>.+): (?P<seconds>[\d.]+) s; (?P<requests>\d+) Graph HTTP requests; "
    r"(?P<added>\d+) users added, (?P<removed>\d+) removed, 0 held; "
    r"load average [\d.]+, [\d.]+, [\d.]+$"
)


def test_it_runs_a_whole_read_then_a_delta_run_and_rolls_back(db, settings):
    # Through the fixture, so the Graph URLs the command points at its sandbox are undone.
    settings.MS_LOGIN_URL, settings.MS_GRAPH_URL = settings.MS_LOGIN_URL, settings.MS_GRAPH_URL
    out = StringIO()
    call_command("bench_groups", "--members", "50", "--latency-ms", "0", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("sandbox: 55 users, a group of 50 in ")
    runs = [LINE.match(line) for line in lines[1:]]
    assert all(runs), lines
    first, delta = runs
    assert first["label"] == "first run (whole read)"
    assert (first["added"], first["removed"]) == ("50", "0")
    # The delta link, one page of transitive members, the nested-group check.
    assert first["requests"] == "3"
    assert delta["label"].startswith("delta run (5 added, 5 removed")
    assert (delta["added"], delta["removed"]) == ("5", "5")
    assert delta["requests"] == "2"  # the delta round and one page of direct members
    assert not Integration.objects.exists() and not FollowedGroup.objects.exists()
    assert not SyncedUser.objects.exists() and not Subscription.objects.exists()
