import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
TELENOR_ID = {
    "TELENOR_ID_URL": "https://signin.telenorid.example",
    "TELENOR_ID_CLIENT_ID": "mss-kalenderkoppling",
    "TELENOR_ID_CLIENT_SECRET": "a-production-secret",
}


def manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ALLOWED_HOSTS")}
    for name in ("MSS_ENCRYPTION_KEYS", *TELENOR_ID):
        clean.pop(name, None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_refuses_production_without_secret_key():
    result = manage("check", MSS_ENV="production", ALLOWED_HOSTS="mss.example.se")
    assert result.returncode != 0
    assert "MSS_ENV=production needs these environment variables: SECRET_KEY" in result.stderr
    assert "MSS_ENCRYPTION_KEYS" in result.stderr
    assert "TELENOR_ID_CLIENT_SECRET" in result.stderr


def test_it_passes_check_deploy_with_the_required_variables(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        MSS_ENV="production",
        SECRET_KEY="p" + Fernet.generate_key().decode() + "-long-random-production-key",
        ALLOWED_HOSTS="mss.example.se",
        MSS_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        MSS_VAR_DIR=str(tmp_path),
        PUBLIC_BASE_URL="https://kalender.example.se",
        **TELENOR_ID,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_refuses_production_with_a_plain_http_public_base_url(tmp_path):
    """The Outlook add-in's manifest names PUBLIC_BASE_URL's addresses: https only."""
    result = manage(
        "check",
        MSS_ENV="production",
        SECRET_KEY="p" + Fernet.generate_key().decode() + "-long-random-production-key",
        ALLOWED_HOSTS="kalender.example.se",
        MSS_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        MSS_VAR_DIR=str(tmp_path),
        PUBLIC_BASE_URL="http://kalender.example.se",
        **TELENOR_ID,
    )
    assert result.returncode != 0
    assert "MSS_ENV=production needs an https PUBLIC_BASE_URL" in result.stderr


def test_it_rejects_an_unknown_environment_name():
    result = manage("check", MSS_ENV="staging")
    assert result.returncode != 0
    assert "MSS_ENV must be 'development' or 'production'" in result.stderr


def _database_setting(database_url: str, **env) -> str:
    code = (
        "from django.conf import settings; d = settings.DATABASES['default']; "
        "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'])"
    )
    result = manage("shell", "-c", code, DATABASE_URL=database_url, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_it_keeps_database_connections_open_on_postgresql_and_not_on_sqlite(tmp_path):
    assert _database_setting("postgres://u@127.0.0.1:5432/mss") == "60 True"
    assert _database_setting(f"sqlite:///{tmp_path / 'x.sqlite3'}") == "0 True"
    assert _database_setting("postgres://u@127.0.0.1:5432/mss", DB_CONN_MAX_AGE="5") == "5 True"
