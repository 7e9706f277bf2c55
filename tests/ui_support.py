"""Shared fixtures for the Microsoft Sync page tests (tests/test_ui_*.py import them)."""

import pytest

from calendarsync.models import Integration, SyncedUser
from onex.models import AbsenceReason, Subscription


@pytest.fixture
def en_client(admin_client):
    """The admin's client with English chosen, so assertions read the msgids."""
    admin_client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return admin_client


@pytest.fixture
def htmx_headers():
    return {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def reasons(company):
    return {
        code: AbsenceReason.objects.create(
            company=company, code=code, label_sv=label, label_en=english, diversion_allowed=allowed
        )
        for code, label, english, allowed in [
            ("MOTE", "Möte", "Meeting", True),
            ("FRANVARANDE", "Frånvarande", "Away", True),
            ("LUNCH", "Lunch", "Lunch", True),
            ("SJUK", "Sjuk", "Ill", False),
        ]
    }


@pytest.fixture
def synced_user(integration, subscription):
    return SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=subscription.email
    )


@pytest.fixture
def foreign_integration(other_company):
    """Another company's integration with a user: every view must 404 on it."""
    integration = Integration.objects.create(
        company=other_company, kind="graph", name="Deras", status="connected"
    )
    subscription = Subscription.objects.create(
        company=other_company, onex_id="their-1", email="eva@annat.se"
    )
    SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=subscription.email
    )
    return integration
