"""/healthz and /readyz: what a load balancer asks, answered before the host check and the
https redirect, naming the part that failed, with One X asked at most every 30 s."""

import socket

import pytest

from mss import health
from tests.onex_sandbox import CLIENT_SECRET


@pytest.fixture(autouse=True)
def fresh_onex_check():
    health.onex_token.forget()
    yield
    health.onex_token.forget()


@pytest.fixture
def dead_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


@pytest.fixture
def redis_caches(settings):
    """The cache on Redis (the embedded locmem cache cannot fail), as in production."""
    from django.core.cache import caches

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/5",
        }
    }
    yield settings
    caches["default"].close()


def token_requests(onex_sandbox):
    return len(onex_sandbox.requests(path_contains="/oauth2/token"))


def test_healthz_answers_without_a_session_or_the_host_check(client, settings):
    settings.ALLOWED_HOSTS = ["mss.example.com"]
    response = client.get("/healthz", HTTP_HOST="10.0.0.7")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_readyz_is_ready_when_every_part_answers(client, onex_sandbox, redis_caches):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "cache": "ok",
        "onex": "ok",
    }


@pytest.mark.django_db
def test_readyz_answers_plain_http_by_address_in_production(client, onex_sandbox, settings):
    settings.ALLOWED_HOSTS = ["mss.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/readyz", HTTP_HOST="10.0.0.7")
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_readyz_names_the_broker_when_it_is_down(client, onex_sandbox, dead_port, monkeypatch):
    from mss.celery import app

    dead = f"redis://127.0.0.1:{dead_port}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", dead)  # Celery reads it before its configuration
    monkeypatch.setitem(app.conf, "broker_url", dead)
    monkeypatch.setitem(app.conf, "broker_connection_timeout", 1)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["broker"] == "failed"
    assert body["status"] == "failed: broker"
    assert body["database"] == body["onex"] == "ok"


@pytest.mark.django_db
def test_readyz_names_the_cache_when_it_is_down(client, onex_sandbox, settings, dead_port):
    from django.core.cache import caches

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{dead_port}/0",
        }
    }
    try:
        response = client.get("/readyz")
    finally:
        caches["default"].close()
    assert response.status_code == 503
    assert response.json()["status"] == "failed: cache"


@pytest.mark.django_db
def test_readyz_names_one_x_when_its_token_is_refused(client, onex_sandbox, settings):
    settings.ONEX_CLIENT_SECRET = "not-the-secret"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "failed: onex"
    assert b"not-the-secret" not in response.content


@pytest.mark.django_db
def test_one_x_is_asked_for_a_token_at_most_every_30_seconds(client, onex_sandbox, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(health.time, "monotonic", lambda: clock[0])
    onex_sandbox.clear_requests()
    for _ in range(5):
        assert client.get("/readyz").status_code == 200
    assert token_requests(onex_sandbox) == 1
    clock[0] += health.ONEX_CHECK_SECONDS - 1
    client.get("/readyz")
    assert token_requests(onex_sandbox) == 1
    clock[0] += 1
    client.get("/readyz")
    assert token_requests(onex_sandbox) == 2


@pytest.mark.django_db
def test_a_failed_one_x_answer_is_kept_30_seconds_too(client, onex_sandbox, settings, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(health.time, "monotonic", lambda: clock[0])
    settings.ONEX_CLIENT_SECRET = "not-the-secret"
    assert client.get("/readyz").status_code == 503
    settings.ONEX_CLIENT_SECRET = CLIENT_SECRET
    assert client.get("/readyz").status_code == 503  # still the remembered failure
    clock[0] += health.ONEX_CHECK_SECONDS
    assert client.get("/readyz").status_code == 200
