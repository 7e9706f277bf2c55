"""IIS's side of Windows authentication for /EWS/: NTLM (pyspnego as the acceptor) over a
keep-alive connection, or Basic when the `auth` knob says so.

pyspnego's pure-Python NTLM acceptor looks the user up in the file named by NTLM_USER_FILE
(`DOMAIN:user:password` lines) when the acceptor is made and again at the type 3 message. The
variable is process-wide, so each step runs under one lock with this server's file set.
"""

import base64
import os
import shutil
import tempfile
import threading
from pathlib import Path

import spnego
from spnego.exceptions import SpnegoError

DEFAULT_DOMAIN = "DEMO"
DEFAULT_USER = "telenor_mss_user"
DEFAULT_USERNAME = f"{DEFAULT_DOMAIN}\\{DEFAULT_USER}"
DEFAULT_PASSWORD = "Sandbox-Lösen-1"

_ENV_LOCK = threading.Lock()


class Accounts:
    """The service accounts IIS accepts, kept in this server's own NTLM user file."""

    def __init__(self, username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD):
        self.directory = tempfile.mkdtemp(prefix="ews-sandbox-")
        self.file = Path(self.directory) / "ntlm-users"
        self.username = username
        self.default_password = password
        self.generation = 0  # a password change re-challenges authenticated connections
        self.set_password(password)

    def set_password(self, password: str | None):
        self.password = password or self.default_password
        domain, _, user = self.username.partition("\\")
        self.file.write_text(f"{domain}:{user}:{self.password}\n", encoding="utf-8")
        self.generation += 1

    def close(self):
        shutil.rmtree(self.directory, ignore_errors=True)

    def same_user(self, name: str) -> bool:
        given_domain, _, given_user = name.rpartition("\\")
        domain, _, user = self.username.partition("\\")
        return given_user.lower() == user.lower() and given_domain.lower() in ("", domain.lower())

    def check_basic(self, header: str) -> str | None:
        try:
            raw = base64.b64decode(header.split(" ", 1)[1].strip(), validate=True)
        except (IndexError, ValueError):
            return None
        for encoding in ("utf-8", "latin-1"):
            try:
                name, _, password = raw.decode(encoding).partition(":")
            except UnicodeDecodeError:
                continue
            if self.same_user(name) and password == self.password:
                return self.username
        return None

    def _with_file(self, call):
        with _ENV_LOCK:
            saved = os.environ.get("NTLM_USER_FILE")
            os.environ["NTLM_USER_FILE"] = str(self.file)
            try:
                return call()
            finally:
                if saved is None:
                    os.environ.pop("NTLM_USER_FILE", None)
                else:
                    os.environ["NTLM_USER_FILE"] = saved

    def ntlm_step(self, connection_state: dict, token: bytes):
        """One NTLM step on a connection: (answer token or None, authenticated user or None).
        A fresh type 1 message starts over; SpnegoError means the credentials are wrong."""
        if token[8:12] == b"\x01\x00\x00\x00" or "ntlm" not in connection_state:
            connection_state["ntlm"] = self._with_file(
                lambda: spnego.server(hostname="ews.demokommun.se", protocol="ntlm")
            )
        context = connection_state["ntlm"]
        answer = self._with_file(lambda: context.step(token))
        if context.complete:
            connection_state.pop("ntlm", None)
            return answer, context.client_principal or self.username
        return answer, None


__all__ = ["Accounts", "DEFAULT_PASSWORD", "DEFAULT_USERNAME", "SpnegoError"]
