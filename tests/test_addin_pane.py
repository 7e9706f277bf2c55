"""The task pane page: no session, both languages, and a policy that lets Outlook frame it and
load Office.js from Microsoft's CDN, and nothing more."""

import json

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def config(response):
    html = response.content.decode()
    start = html.index('<script id="addin-config" type="application/json">') + len(
        '<script id="addin-config" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_the_pane_needs_no_session_and_speaks_swedish_by_default(client):
    response = client.get(reverse("addin:taskpane"))
    assert response.status_code == 200
    assert "sessionid" not in response.cookies
    text = response.content.decode()
    assert '<html lang="sv">' in text and "Telefonstatus" in text and "Mina regler" in text
    settings = config(response)
    assert settings["lang"] == "sv"
    assert settings["api"]["context"] == reverse("addin:api_context")
    assert "stängt av Outlook-tillägget" in settings["strings"]["plugin_off"]


def test_the_pane_speaks_english_when_outlook_asks(client):
    response = client.get(reverse("addin:taskpane") + "?lang=en")
    assert '<html lang="en">' in response.content.decode()
    assert "Phone status" in response.content.decode()
    assert config(response)["strings"]["skip"] == "Do not sync"


def test_outlook_may_frame_the_pane_and_office_js_comes_from_microsofts_cdn(client, settings):
    response = client.get(reverse("addin:taskpane"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self' https://appsforoffice.microsoft.com" in policy
    assert "frame-ancestors 'self' https:" in policy
    assert "unsafe-inline" not in policy.split("style-src-attr")[0]
    assert "X-Frame-Options" not in response
    assert f'src="{settings.OFFICE_JS_URL}"' in response.content.decode()


def test_the_pane_asks_entra_for_the_products_own_api(client, settings):
    msal = config(client.get(reverse("addin:taskpane")))["msal"]
    assert msal == {
        "clientId": settings.MS_CLIENT_ID,
        "authority": settings.MS_ADDIN_AUTHORITY,
        "scopes": [settings.MS_ADDIN_API_SCOPE],
    }
