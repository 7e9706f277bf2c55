import socket

import pytest
from django.conf import settings
from django.db import connection

from calendarsync import outbound
from calendarsync.models import Integration
from onex.models import Company, Membership, Subscription

pytest_plugins = [
    "tests.onex_sandbox",
    "tests.m365_sandbox",
    "tests.ui_support",
    "tests.browser_support",
    "tests.telenorid_sandbox",
    "tests.ews_sandbox",
]


def pytest_configure(config):
    # The live servers answer each request in a thread that ends with it: a persistent
    # connection would outlive its thread and keep the test database open at teardown.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


def pytest_report_header(config):
    # CI must show the real parts it ran on.
    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    broker = settings.CELERY_BROKER_URL.split("://", 1)[0]
    return f"mss: database={db} broker={broker} cache={settings.CACHES['default']['BACKEND']}"


@pytest.fixture(autouse=True)
def test_dns(monkeypatch):
    """No DNS from tests: the example domains resolve to a public address, nothing else does."""

    def resolve(host, port):
        if host.endswith((".demo.se", ".example.se")):
            return ["82.182.1.73"]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(outbound, "resolve", resolve)
    return resolve


@pytest.fixture
def company(db):
    return Company.objects.create(name="Demo AB", org_number="556000-0001", onex_id="demo-ab")


@pytest.fixture
def other_company(db):
    return Company.objects.create(name="Annat AB", org_number="556000-0002", onex_id="annat-ab")


@pytest.fixture
def admin_user(company, django_user_model):
    user = django_user_model.objects.create_user("admin@demo.se", password="pw-for-tests-1")
    Membership.objects.create(user=user, company=company)
    return user


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def staff_client(client, django_user_model):
    staff = django_user_model.objects.create_superuser("support@telenor.se", password="pw-staff-1")
    client.force_login(staff)
    return client


@pytest.fixture
def integration(company):
    return Integration.objects.create(
        company=company, kind=Integration.Kind.GRAPH, name="Exchange Online", status="connected"
    )


@pytest.fixture
def subscription(company):
    return Subscription.objects.create(
        company=company,
        onex_id="sub-1",
        email="anna@demo.se",
        display_name="Anna Andersson",
        has_diversion=True,
    )


@pytest.fixture
def db_vendor():
    return connection.vendor
