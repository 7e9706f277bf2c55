"""Knobs that make the EWS sandbox behave like a troubled Exchange server.

Changed at runtime with POST /_sandbox/knobs (a partial dict, all or nothing), shown by GET.
"""

from dataclasses import asdict, dataclass, field

BUILDS = {
    # name: ((major, minor, major build, minor build), Version attribute, newest API version)
    "Exchange2013": ((15, 0, 1497, 48), "Exchange2013_SP1", "Exchange2013_SP1"),
    "Exchange2016": ((15, 1, 2507, 39), "V2017_07_11", "Exchange2016"),
    "Exchange2019": ((15, 2, 1544, 11), "V2017_07_11", "Exchange2016"),
    "ExchangeSE": ((15, 2, 2562, 17), "V2017_07_11", "Exchange2016"),
}

IDENTITY_TOKEN_SPOILERS = {"expired", "amurl", "unknown_key", "wrong_audience"}


@dataclass
class Knobs:
    # {"count": n, "back_off_ms": m}: the next n EWS calls fail with ErrorServerBusy
    server_busy: dict = field(default_factory=lambda: {"count": 0, "back_off_ms": 0})
    impersonation: bool = True  # the service account holds ApplicationImpersonation
    password: str | None = None  # the service account's password (None: the default)
    outage: str | None = None  # "503" or "close": EWS is down (controls still work)
    latency_ms: int = 0  # added to every EWS call
    auth: str = "ntlm"  # "ntlm" or "basic": what IIS offers
    status_seconds: float | None = None  # status events this often, instead of StatusFrequency
    retry_seconds: float = 30.0  # the first retry of a failed delivery; it doubles
    watermark_expired: bool = False  # Subscribe refuses any watermark (older than ~30 days)
    build: str = "Exchange2019"  # which Exchange answers (see BUILDS)
    # ExpandDL lists at most this many members (IncludesLastItemInRange false); None: all
    expand_dl_limit: int | None = None
    # Spoiled add-in identity tokens (addin.py): {"expired": true}, {"amurl": "<other URL>"},
    # {"unknown_key": true}, {"wrong_audience": true or "<aud>"}; {} = none.
    identity_token: dict = field(default_factory=dict)

    def update(self, changes: dict) -> None:
        if not isinstance(changes, dict):
            raise ValueError("knobs must be a JSON object")
        unknown = set(changes) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown knobs: {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            if not _valid(name, value):
                raise ValueError(f"bad value for {name}: {value!r}")
        for name, value in changes.items():
            if name == "server_busy":
                value = {"count": value.get("count", 1), "back_off_ms": value.get("back_off_ms", 0)}
            setattr(self, name, value)

    def as_dict(self) -> dict:
        shown = asdict(self)
        shown["password"] = "(changed)" if self.password is not None else None  # never shown
        return shown


def _number(value, allow_none=False) -> bool:
    if value is None:
        return allow_none
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _valid(name, value) -> bool:
    if name == "server_busy":
        return (
            isinstance(value, dict)
            and set(value) <= {"count", "back_off_ms"}
            and all(_number(v) for v in value.values())
        )
    if name in ("impersonation", "watermark_expired"):
        return isinstance(value, bool)
    if name == "password":
        return value is None or (isinstance(value, str) and value and ":" not in value)
    if name == "outage":
        return value in (None, "503", "close")
    if name == "latency_ms":
        return _number(value)
    if name == "auth":
        return value in ("ntlm", "basic")
    if name == "status_seconds":
        return _number(value, allow_none=True) and value != 0
    if name == "retry_seconds":
        return _number(value) and value > 0
    if name == "build":
        return value in BUILDS
    if name == "expand_dl_limit":
        return value is None or (_number(value) and isinstance(value, int))
    if name == "identity_token":
        return isinstance(value, dict) and set(value) <= IDENTITY_TOKEN_SPOILERS
    return False
