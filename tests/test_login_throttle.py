"""Sign-in is throttled per account and address: the 6th attempt after five failures waits,
even with the right password; on the local form and /admin/login/ alike."""

import pytest
from django.test import Client
from django.urls import reverse


@pytest.fixture
def account(django_user_model):
    return django_user_model.objects.create_superuser("support@telenor.se", password="rätt-lösen-1")


@pytest.mark.parametrize(
    ("url", "field"), [(reverse("login"), "username"), ("/admin/login/", "username")]
)
def test_the_sixth_attempt_after_five_failures_waits_with_a_clear_message(
    client, account, url, field
):
    for attempt in range(4):
        response = client.post(url, {field: account.username, "password": f"fel-{attempt}"})
        assert response.status_code == 200, attempt  # the form again, with its error
    # The fifth failure already says to wait; the sixth waits even with the right password.
    fifth = client.post(url, {field: account.username, "password": "fel-4"})
    assert fifth.status_code == 429
    response = client.post(url, {field: account.username, "password": "rätt-lösen-1"})
    assert response.status_code == 429
    body = response.content.decode()
    assert "För många inloggningsförsök" in body and "Vänta 15 minuter" in body
    assert not client.session.get("_auth_user_id")


def test_another_address_or_account_is_not_held_back(client, account, django_user_model):
    for attempt in range(5):
        client.post(reverse("login"), {"username": account.username, "password": f"x{attempt}"})
    other = Client(REMOTE_ADDR="10.9.8.7")
    response = other.post(
        reverse("login"), {"username": account.username, "password": "rätt-lösen-1"}
    )
    assert response.status_code == 302
    django_user_model.objects.create_user("anna@demo.se", password="annas-lösen-1", is_staff=True)
    response = client.post(
        reverse("login"), {"username": "anna@demo.se", "password": "annas-lösen-1"}
    )
    assert response.status_code == 302
