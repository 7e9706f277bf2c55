"""Telenor ID sandbox: an OpenID Connect provider on https://127.0.0.1:8013.

`python -m sandbox.telenorid [--port 8013] [--ca-file FILE]`. Authorization code flow with PKCE
(S256), RS256 ID tokens, userinfo, JWKS, RP-initiated logout and an SSO cookie, as strict as a
real provider; /_sandbox/ controls for tests. See server.py and provider.py.
"""

from .knobs import Knobs
from .provider import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_POST_LOGOUT_URI,
    DEFAULT_REDIRECT_URI,
    Provider,
)
from .server import TelenorIdServer

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_POST_LOGOUT_URI",
    "DEFAULT_REDIRECT_URI",
    "Knobs",
    "Provider",
    "TelenorIdServer",
]
