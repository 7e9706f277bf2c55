"""Every Microsoft Sync page stays within 15 SQL queries for an integration of 10,000 users.
(Server times are printed by `manage.py bench_pages`, not timed here.)"""

from calendarsync.management.commands.bench_pages import (
    MAX_QUERIES,
    bench_calendar,
    bench_provider,
    build_bench_data,
    pages,
)
from calendarsync.models import SyncedUser


def test_it_answers_every_page_within_15_queries_at_10000_users(
    admin_client, company, django_assert_max_num_queries
):
    integration, synced = build_bench_data(company, users=10_000, bookings_per_user=2)
    assert SyncedUser.objects.filter(integration=integration).count() == 10_000
    someone = synced[len(synced) // 2]
    checked = []
    with bench_provider(bench_calendar(someone.email)):
        for label, method, url, data, headers in pages(integration, synced):
            with django_assert_max_num_queries(MAX_QUERIES):
                response = getattr(admin_client, method)(url, data or {}, **headers)
                if response.streaming:
                    content = b"".join(response.streaming_content)
                    assert content.count(b"\n") == 10_001, label
            assert response.status_code == 200, label
            checked.append(label)
    assert len(checked) == 22
