"""A PostgreSQL database of each scenario's own, cloned from one migrated template.

The template (`<db>_faults_template`) is migrated once per test session and holds the periodic
schedules (`manage.py install_schedules`); each scenario's `<db>_faults_<n>` is a copy of it,
dropped afterwards. `<db>` is the session's own database name, so two runs on one server (a
session's and CI's) never drop each other's. This test process reaches the scenario's
database through Django's default connection, pointed at it for the scenario
(`ScenarioDatabase.attached`).
"""

import contextlib
import os
import subprocess
import sys

import psycopg
from django.conf import settings
from django.db import connections
from psycopg import sql

from .processes import REPO


def faults_name(suffix: str) -> str:
    return f"{settings.DATABASES['default']['NAME']}_faults_{suffix}"


def server_settings() -> dict:
    db = settings.DATABASES["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql", (
        "The fault matrix runs on PostgreSQL (it cuts database connections): set "
        "DATABASE_URL=postgres://… as .ci/run does."
    )
    return {
        "host": db.get("HOST") or "127.0.0.1",
        "port": int(db.get("PORT") or 5432),
        "user": db.get("USER") or "postgres",
        "password": db.get("PASSWORD") or None,
    }


def url_for(name: str) -> str:
    server = server_settings()
    password = f":{server['password']}" if server["password"] else ""
    return f"postgres://{server['user']}{password}@{server['host']}:{server['port']}/{name}"


def _admin():
    return psycopg.connect(dbname="postgres", autocommit=True, **server_settings())


def _drop(cursor, name: str) -> None:
    cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def create_template() -> None:
    """Migrate a fresh template and install the beat schedules into it."""
    with _admin() as admin, admin.cursor() as cursor:
        _drop(cursor, faults_name("template"))
        template = faults_name("template")
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
    env = {**os.environ, "DATABASE_URL": url_for(template), "PYTHONPATH": str(REPO)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    for command in (["migrate", "--noinput", "-v0"], ["install_schedules"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )


def drop_template() -> None:
    with _admin() as admin, admin.cursor() as cursor:
        _drop(cursor, faults_name("template"))


class ScenarioDatabase:
    def __init__(self, number: int):
        self.name = faults_name(str(number))
        self.url = url_for(self.name)

    def create(self) -> "ScenarioDatabase":
        with _admin() as admin, admin.cursor() as cursor:
            _drop(cursor, self.name)
            cursor.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(self.name), sql.Identifier(faults_name("template"))
                )
            )
        return self

    def drop(self) -> None:
        with _admin() as admin, admin.cursor() as cursor:
            _drop(cursor, self.name)

    @contextlib.contextmanager
    def attached(self):
        """Django's default connection on this database, for the duration."""
        connection = connections["default"]
        saved = connection.settings_dict["NAME"]
        connection.close()
        connection.settings_dict["NAME"] = self.name
        try:
            yield
        finally:
            connection.close()
            connection.settings_dict["NAME"] = saved

    def terminate_other_sessions(self) -> int:
        """pg_terminate_backend on every session of this database but this test process's own
        (the measuring instrument): the web, worker and beat processes lose their connections."""
        own = connections["default"]
        own.ensure_connection()
        with own.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (own_pid,) = cursor.fetchone()
        with _admin() as admin, admin.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid() AND pid <> %s",
                [self.name, own_pid],
            )
            return cursor.fetchone()[0]
