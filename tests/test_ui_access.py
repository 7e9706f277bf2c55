"""Every Microsoft Sync view: another company's admin gets 404, anonymous users go to login,
and every form needs its CSRF token."""

import pytest
from django.test import Client
from django.urls import reverse

from calendarsync.models import SyncRule

# (url name, method, needs a user pk, needs a rule pk)
INTEGRATION_VIEWS = [
    ("integration", "get", False, False),
    ("integration", "post", False, False),
    ("integration_connection", "get", False, False),
    ("integration_connection", "post", False, False),
    ("integration_connection_test", "post", False, False),
    ("rules", "get", False, False),
    ("rule_new", "get", False, False),
    ("rule_new", "post", False, False),
    ("rules_from_template", "post", False, False),
    ("rules_preview", "get", False, False),
    ("rules_preview", "post", False, False),
    ("rule_edit", "get", False, True),
    ("rule_edit", "post", False, True),
    ("rule_delete", "get", False, True),
    ("rule_delete", "post", False, True),
    ("rule_undo_delete", "post", False, False),
    ("rule_move", "post", False, True),
    ("users", "get", False, False),
    ("user_add", "post", False, False),
    ("users_import", "get", False, False),
    ("users_import", "post", False, False),
    ("users_export", "get", False, False),
    ("user_suggestions", "get", False, False),
    ("user_remove", "get", True, False),
    ("user_remove", "post", True, False),
    ("integration_addin", "get", False, False),
    ("dashboard", "get", False, False),
    ("dashboard_timeline", "get", False, False),
    ("dashboard_activity", "get", False, False),
    ("dashboard_status", "get", False, False),
    ("sync_progress", "get", False, False),
    ("integration_remove", "get", False, False),
    ("integration_remove", "post", False, False),
]


def _url(name, integration, with_user, with_rule):
    args = [integration.code]
    if with_user:
        args.append(integration.users.get().pk)
    if with_rule:
        args.append(integration.rules.get().pk)
    return reverse(f"calendarsync:{name}", args=args)


@pytest.fixture
def foreign_rule(foreign_integration):
    return SyncRule.objects.create(integration=foreign_integration, action="skip", position=1)


@pytest.mark.parametrize(("name", "method", "with_user", "with_rule"), INTEGRATION_VIEWS)
def test_it_404s_for_another_companys_integration(
    en_client, foreign_integration, foreign_rule, name, method, with_user, with_rule
):
    url = _url(name, foreign_integration, with_user, with_rule)
    response = getattr(en_client, method)(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 404
    # Nothing of theirs changed either.
    foreign_integration.refresh_from_db()
    assert foreign_integration.status != "removing"
    assert foreign_integration.users.count() == 1
    assert foreign_integration.rules.count() == 1


@pytest.mark.parametrize(
    ("name", "with_user", "with_rule"),
    [("rule_edit", False, True), ("rule_delete", False, True), ("user_remove", True, False)],
)
def test_it_404s_for_their_object_under_my_integration(
    en_client, integration, foreign_integration, foreign_rule, name, with_user, with_rule
):
    """A pk of theirs behind my own integration's code is a 404 too."""
    pk = foreign_integration.users.get().pk if with_user else foreign_rule.pk
    url = reverse(f"calendarsync:{name}", args=[integration.code, pk])
    assert en_client.post(url).status_code == 404
    assert foreign_integration.users.count() == 1
    assert foreign_integration.rules.count() == 1


@pytest.mark.parametrize("name", ["integration_add", "integration_add_ews"])
def test_it_404s_company_pages_for_a_user_without_company(client, django_user_model, name):
    client.force_login(django_user_model.objects.create_user("nobody", password="x-pw-123456"))
    assert client.get(reverse(f"calendarsync:{name}")).status_code == 404


@pytest.mark.parametrize(("name", "method", "with_user", "with_rule"), INTEGRATION_VIEWS)
def test_it_sends_anonymous_users_to_login(
    client, foreign_integration, foreign_rule, name, method, with_user, with_rule
):
    response = getattr(client, method)(_url(name, foreign_integration, with_user, with_rule))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    ("name", "with_user", "with_rule"),
    [
        ("integration", False, False),
        ("integration_connection", False, False),
        ("integration_connection_test", False, False),
        ("rule_new", False, False),
        ("rules_from_template", False, False),
        ("rule_edit", False, True),
        ("rule_delete", False, True),
        ("rule_undo_delete", False, False),
        ("rule_move", False, True),
        ("user_add", False, False),
        ("users_import", False, False),
        ("user_remove", True, False),
    ],
)
def test_it_refuses_posts_without_csrf_token(
    admin_user, integration, synced_user_and_rule, name, with_user, with_rule
):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(_url(name, integration, with_user, with_rule), {"direction": "up"})
    assert response.status_code == 403
    assert integration.users.count() == 1 and integration.rules.count() == 1


@pytest.fixture
def synced_user_and_rule(integration, subscription, reasons):
    integration.users.create(subscription=subscription, email=subscription.email)
    SyncRule.objects.create(
        integration=integration, action="info", reason=reasons["MOTE"], position=1
    )


def test_it_refuses_add_provider_without_csrf_token(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert (
        client.post(reverse("calendarsync:integration_add"), {"kind": "graph"}).status_code == 403
    )
    assert client.post(reverse("calendarsync:integration_add_ews"), {}).status_code == 403


def test_every_form_on_every_page_carries_a_csrf_token(en_client, integration, reasons):
    pages = [
        reverse("calendarsync:overview"),
        reverse("calendarsync:integration_add"),
        reverse("calendarsync:integration_add_ews"),
        reverse("calendarsync:integration", args=[integration.code]),
        reverse("calendarsync:rules", args=[integration.code]),
        reverse("calendarsync:users", args=[integration.code]),
        reverse("calendarsync:users_import", args=[integration.code]),
    ]
    for page in pages:
        body = en_client.get(page).content.decode()
        posts = body.count('method="post"')
        assert body.count("csrfmiddlewaretoken") >= posts, page
