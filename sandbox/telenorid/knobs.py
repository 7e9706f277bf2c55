"""Knobs that make the Telenor ID sandbox misbehave the way a broken or hostile provider would.

Changed at runtime with POST /_sandbox/knobs (a partial dict), shown by GET /_sandbox/knobs.
"""

import re
from dataclasses import asdict, dataclass, fields

OAUTH_ERROR = re.compile(r"^[a-z_]+$")


@dataclass
class Knobs:
    wrong_nonce: bool = False  # the ID token carries a nonce other than the one asked for
    expired_token: bool = False  # the ID token's iat and exp lie an hour in the past
    unknown_key: bool = False  # the ID token is signed with a key that is not in the JWKS
    latency_ms: int = 0  # added to every request but the /_sandbox/ controls
    token_error: str | None = None  # e.g. "server_error": /token answers only that

    def update(self, changes: dict) -> None:
        """Apply a partial dict, all or nothing; ValueError names what is wrong."""
        if not isinstance(changes, dict):
            raise ValueError("knobs must be a JSON object")
        names = {spec.name for spec in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown knobs: {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            if name in ("wrong_nonce", "expired_token", "unknown_key"):
                ok = isinstance(value, bool)
            elif name == "latency_ms":
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            else:
                ok = value is None or (isinstance(value, str) and OAUTH_ERROR.match(value))
            if not ok:
                raise ValueError(f"bad value for {name}: {value!r}")
        for name, value in changes.items():
            setattr(self, name, value)

    def as_dict(self) -> dict:
        return asdict(self)
