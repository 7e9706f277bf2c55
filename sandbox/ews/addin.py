"""The Outlook add-in's side of Exchange Server: its auth metadata document and the identity tokens
Office.js gets from it (`Office.context.mailbox.getUserIdentityTokenAsync`).

`GET /autodiscover/metadata/json/1` is anonymous, as on a real Exchange server: Exchange's "auth
metadata" JSON naming the certificate it signs identity tokens with (by `x5t`, the base64url
SHA-1 of the certificate's DER, and the DER itself in base64). Its realm is the server's host.

An identity token is an RS256 JWT with `x5t` in the header; its `appctx` claim is a JSON *string*
holding `msexchuid` (the mailbox's stable id), `version` "ExIdTok.V1" and `amurl` (where the
metadata document is). It is valid for 8 hours. The `identity_token` knob spoils it: expired,
amurl (another address), unknown_key (signed by a certificate in no metadata), wrong_audience.

`nbf` and `exp` are numeric strings, as real Exchange writes them (not RFC 7519's numbers).
"""

import json
import threading
import time
import uuid
from urllib.parse import urlsplit

from joserfc import jwt

from ..keys import signing_key

METADATA_PATH = "/autodiscover/metadata/json/1"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"  # Exchange's well-known service id
TOKEN_VERSION = "ExIdTok.V1"
LIFETIME = 8 * 3600
OTHER_AUDIENCE = "https://elsewhere.example.se/addin/taskpane/"


class IdentityTokens:
    """The server's token-signing certificate (and a rogue one for the unknown_key knob), made
    on first use (an RSA key takes ~0.1 s and every test starts a sandbox) and kept across
    resets, as a server keeps its certificate."""

    def __init__(self):
        self.lock = threading.Lock()
        self._keys: dict[str, dict] = {}

    def key(self, name: str = "signing") -> dict:
        with self.lock:
            if name not in self._keys:
                self._keys[name] = signing_key(f"Exchange sandbox {name} certificate")
            return self._keys[name]

    @staticmethod
    def realm(base_url: str) -> str:
        return urlsplit(base_url).hostname or ""

    def issuer(self, base_url: str) -> str:
        return f"{EXCHANGE_APP_ID}@{self.realm(base_url)}"

    def metadata(self, base_url: str) -> dict:
        key = self.key("signing")
        realm = self.realm(base_url)
        return {
            "id": f"_{uuid.uuid5(uuid.NAMESPACE_URL, base_url)}",
            "version": "1.0",
            "name": "Exchange",
            "realm": realm,
            "serviceName": EXCHANGE_APP_ID,
            "issuer": self.issuer(base_url),
            "allowedAudiences": [self.issuer(base_url)],
            "keys": [
                {
                    "usage": "signing",
                    "keyinfo": {"x5t": key["x5t"]},
                    "keyvalue": {"type": "x509Certificate", "value": key["x5c"]},
                }
            ],
            "endpoints": [
                {"location": base_url + METADATA_PATH, "protocol": "OAuth2", "usage": "metadata"}
            ],
        }

    def token(self, base_url: str, mailbox: str, aud: str, knob: dict) -> str:
        """An identity token for `mailbox` and the add-in page `aud`, spoiled as `knob` says."""
        now = int(time.time())
        issued = now - LIFETIME - 3600 if knob.get("expired") else now
        wrong_audience = knob.get("wrong_audience")
        if wrong_audience:
            aud = wrong_audience if isinstance(wrong_audience, str) else OTHER_AUDIENCE
        context = {
            "msexchuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{mailbox.lower()}")),
            "version": TOKEN_VERSION,
            "amurl": knob.get("amurl") or base_url + METADATA_PATH,
        }
        claims = {
            "aud": aud,
            "iss": self.issuer(base_url),
            "nbf": str(issued),
            "exp": str(issued + LIFETIME),
            "appctxsender": self.issuer(base_url),
            "isbrowserhostedapp": "true",
            "appctx": json.dumps(context, separators=(",", ":")),
        }
        key = self.key("rogue" if knob.get("unknown_key") else "signing")
        return jwt.encode({"typ": "JWT", "alg": "RS256", "x5t": key["x5t"]}, claims, key["jwk"])
