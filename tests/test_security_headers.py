"""Headers and sessions: CSP, Permissions-Policy, the usual Django headers, no caching of
signed-in pages, and sessions that end with the browser or after 8 idle hours."""

import subprocess
import sys
import textwrap
from datetime import timedelta

from django.conf import settings
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone

from mss.middleware import SEEN
from tests.test_settings import ROOT


def test_every_response_carries_csp_and_permissions_policy(client):
    response = client.get(reverse("login"))
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("style-src-attr")[0]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "camera=()" in response["Permissions-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_signed_in_pages_are_never_cached(admin_client, integration):
    for url in [
        reverse("calendarsync:overview"),
        reverse("calendarsync:dashboard", args=[integration.code]),
        reverse("calendarsync:users_export", args=[integration.code]),
    ]:
        assert "no-store" in admin_client.get(url)["Cache-Control"], url


def test_no_page_has_an_inline_script(admin_client, integration):
    for url in [reverse("calendarsync:overview"), reverse("calendarsync:integration_add")]:
        body = admin_client.get(url).content.decode()
        assert "<script>" not in body and " on" + "change=" not in body
        assert all('src="' in tag for tag in body.split("<script")[1:])


def test_sessions_end_with_the_browser_and_after_eight_idle_hours(admin_client):
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE and settings.SESSION_COOKIE_AGE == 8 * 3600
    response = admin_client.get(reverse("calendarsync:overview"))
    cookie = response.cookies.get(settings.SESSION_COOKIE_NAME)
    assert cookie is None or not cookie["max-age"]  # a browser-session cookie
    key = admin_client.session.session_key
    # Idle past the refresh interval (seen long ago): the next request moves the expiry on.
    session = admin_client.session
    session[SEEN] = 0
    session.save()
    Session.objects.filter(pk=key).update(expire_date=timezone.now() + timedelta(minutes=1))
    admin_client.get(reverse("calendarsync:overview"))
    expires = Session.objects.get(pk=key).expire_date
    assert expires > timezone.now() + timedelta(hours=7, minutes=59)


def test_a_busy_session_is_not_saved_on_every_request(admin_client):
    admin_client.get(reverse("calendarsync:overview"))
    seen = admin_client.session[SEEN]
    admin_client.get(reverse("calendarsync:overview"))
    assert admin_client.session[SEEN] == seen


def test_production_responses_carry_every_security_header(tmp_path):
    """Under MSS_ENV=production (its own process: settings are read at start)."""
    script = textwrap.dedent(
        """
        import django
        django.setup()
        from django.core.management import call_command
        from django.test import Client
        call_command("collectstatic", "--noinput", verbosity=0)  # as a deploy does first
        response = Client(HTTP_HOST="mss.example.se").get("/login/", secure=True)
        for name in ("Content-Security-Policy", "Permissions-Policy", "X-Frame-Options",
                     "X-Content-Type-Options", "Referrer-Policy", "Strict-Transport-Security"):
            print(name, "=", response.get(name, "MISSING"))
        print("STYLE", response.content.decode().split('rel="stylesheet" href="', 1)[1][:20])
        """
    )
    from cryptography.fernet import Fernet

    env = {
        "DJANGO_SETTINGS_MODULE": "mss.settings",
        "MSS_ENV": "production",
        "SECRET_KEY": "p" + Fernet.generate_key().decode() + "-long-random-production-key",
        "ALLOWED_HOSTS": "mss.example.se",
        "PUBLIC_BASE_URL": "https://mss.example.se",
        "MSS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "MSS_VAR_DIR": str(tmp_path),
        "TELENOR_ID_URL": "https://signin.telenorid.example",
        "TELENOR_ID_CLIENT_ID": "mss-kalenderkoppling",
        "TELENOR_ID_CLIENT_SECRET": "a-production-secret",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "MISSING" not in result.stdout, result.stdout
    assert "X-Frame-Options = DENY" in result.stdout
    assert "STYLE /static/css/mss." in result.stdout  # the hashed name whitenoise serves
