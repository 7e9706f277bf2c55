from django.urls import reverse

from calendarsync.models import Integration


def test_it_shows_own_integration(admin_client, integration):
    response = admin_client.get(reverse("calendarsync:integration", args=[integration.code]))
    assert response.status_code == 200
    assert integration.name in response.content.decode()


def test_it_404s_for_another_companys_integration(admin_client, other_company):
    theirs = Integration.objects.create(company=other_company, kind="graph", name="Deras")
    response = admin_client.get(reverse("calendarsync:integration", args=[theirs.code]))
    assert response.status_code == 404


def test_it_lists_only_own_integrations(admin_client, integration, other_company):
    Integration.objects.create(company=other_company, kind="graph", name="Hemlig integration")
    body = admin_client.get(reverse("calendarsync:overview")).content.decode()
    assert integration.name in body
    assert "Hemlig integration" not in body


def test_a_user_without_company_gets_the_no_access_page_and_404s(
    client, django_user_model, integration
):
    client.force_login(
        django_user_model.objects.create_user("nobody", email="nobody@demo.se", password="x-pw-1")
    )
    overview = client.get(reverse("calendarsync:overview"))
    assert overview.status_code == 302
    assert overview["Location"] == reverse("calendarsync:no_access")
    page = client.get(reverse("calendarsync:no_access"))
    assert page.status_code == 403
    text = page.content.decode()
    assert "nobody@demo.se" in text and "Mitt Företag" in text
    page = client.get(reverse("calendarsync:integration", args=[integration.code]))
    assert page.status_code == 404


def test_the_no_access_page_sends_an_admin_on_to_the_overview(admin_client):
    response = admin_client.get(reverse("calendarsync:no_access"))
    assert response.status_code == 302
    assert response["Location"] == reverse("calendarsync:overview")


def test_it_sends_anonymous_users_to_login(client, integration):
    response = client.get(reverse("calendarsync:integration", args=[integration.code]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
