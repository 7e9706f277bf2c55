"""The EWS URL may only point to a public https host (no way into the service's own network)."""

import pytest
from django.urls import reverse
from django.utils import translation

from calendarsync import outbound
from calendarsync.models import Integration

REFUSED = [
    ("http://mail.demo.se/EWS/Exchange.asmx", "must start with https://"),
    ("https://localhost/EWS/Exchange.asmx", "not to this service"),
    ("https://owa.localhost/EWS/Exchange.asmx", "not to this service"),
    ("https://metadata.google.internal/computeMetadata/v1/", "not to this service"),
    ("https://127.0.0.1/EWS/Exchange.asmx", "internal address (127.0.0.1)"),
    ("https://127.8.9.10/EWS/Exchange.asmx", "internal address"),
    ("https://[::1]/EWS/Exchange.asmx", "internal address (::1)"),
    ("https://[::ffff:127.0.0.1]/EWS/Exchange.asmx", "internal address (127.0.0.1)"),
    ("https://169.254.169.254/latest/meta-data/", "internal address (169.254.169.254)"),
    ("https://[fe80::1]/EWS/Exchange.asmx", "internal address"),
    ("https://10.0.0.5/EWS/Exchange.asmx", "internal address (10.0.0.5)"),
    ("https://172.16.3.4/EWS/Exchange.asmx", "internal address (172.16.3.4)"),
    ("https://192.168.1.10/EWS/Exchange.asmx", "internal address (192.168.1.10)"),
    ("https://[fd12:3456::1]/EWS/Exchange.asmx", "internal address"),
    ("https://0.0.0.0/EWS/Exchange.asmx", "internal address"),
    ("https://224.0.0.1/EWS/Exchange.asmx", "internal address"),
    ("https://2130706433/EWS/Exchange.asmx", "normal IP address (127.0.0.1)"),
    ("https://0x7f000001/EWS/Exchange.asmx", "normal IP address (127.0.0.1)"),
    ("https://0177.0.0.1/EWS/Exchange.asmx", "normal IP address (127.0.0.1)"),
    ("https://127.1/EWS/Exchange.asmx", "normal IP address (127.0.0.1)"),
    ("https://admin:hemligt@mail.demo.se/EWS/Exchange.asmx", "user name or password"),
    ("https://mail.demo.se@10.0.0.1/EWS/Exchange.asmx", "user name or password"),
    ("https://intranet.kund.se/EWS/Exchange.asmx", "internal address (10.1.2.3)"),
    ("https://v6.kund.se/EWS/Exchange.asmx", "internal address"),
    ("https://nowhere.invalid/EWS/Exchange.asmx", "could not be found"),
]


@pytest.fixture
def dns(test_dns, monkeypatch):
    """Names that resolve to internal addresses, as a rebinding attacker's DNS would."""
    names = {"intranet.kund.se": ["82.182.1.73", "10.1.2.3"], "v6.kund.se": ["fd00::7"]}
    monkeypatch.setattr(
        outbound, "resolve", lambda host, port: names.get(host) or test_dns(host, port)
    )


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_it_refuses_urls_into_the_services_own_network(dns, url, reason):
    with translation.override("en"), pytest.raises(outbound.RefusedURL) as refused:
        outbound.check_url(url)
    assert reason in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://mail.demo.se/EWS/Exchange.asmx",
        "https://82.182.1.73/EWS/Exchange.asmx",
        "https://mail.demo.se:8443/EWS/Exchange.asmx",
    ],
)
def test_it_accepts_a_public_https_host(dns, url):
    assert outbound.check_url(url) == ["82.182.1.73"]


def test_the_form_shows_each_refusal_in_swedish(admin_client, company, dns):
    assert len(REFUSED) >= 15
    for url, _reason in REFUSED[1:]:
        response = admin_client.post(
            reverse("calendarsync:integration_add_ews"),
            {"name": "Lokal", "ews_url": url, "ews_username": "svc", "ews_password": "pw"},
        )
        assert response.status_code == 200, url
        assert 'id="id_ews_url_error"' in response.content.decode(), url
    assert not Integration.objects.exists()
    body = admin_client.post(
        reverse("calendarsync:integration_add_ews"),
        {"name": "Lokal", "ews_url": REFUSED[8][0], "ews_username": "svc", "ews_password": "p"},
    ).content.decode()
    assert "en intern adress (169.254.169.254)" in body


def test_only_the_configured_sandbox_address_passes_although_internal(settings, test_dns):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1:8012"]
    assert outbound.check_url("https://127.0.0.1:8012/EWS/Exchange.asmx")
    for other in ("https://127.0.0.1:8013/EWS/Exchange.asmx", "https://10.0.0.5:8012/EWS/"):
        with pytest.raises(outbound.RefusedURL):
            outbound.check_url(other)
    settings.OUTBOUND_ALLOWED_HOSTS = []  # production's default
    with pytest.raises(outbound.RefusedURL):
        outbound.check_url("https://127.0.0.1:8012/EWS/Exchange.asmx")
