"""The provider's RS256 signing keys: the current one, the one before it, and a stray one.

Each key's `kid` is its RFC 7638 thumbprint. After a rotation the JWKS publishes the previous key
too, so tokens signed just before still verify; the stray key (for the `unknown_key` knob) is
never published.
"""

import threading

from joserfc import errors, jwt
from joserfc.jwk import KeySet, RSAKey

ALGORITHM = "RS256"


def new_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"use": "sig", "alg": ALGORITHM}, auto_kid=True)


class KeyRing:
    def __init__(self):
        self.lock = threading.Lock()
        self.current = new_key()
        self.previous: RSAKey | None = None
        self._stray: RSAKey | None = None

    def rotate(self) -> RSAKey:
        fresh = new_key()  # outside the lock: making a key is the slow part
        with self.lock:
            self.previous, self.current = self.current, fresh
        return fresh

    def published(self) -> list[RSAKey]:
        with self.lock:
            return [key for key in (self.current, self.previous) if key is not None]

    def jwks(self) -> dict:
        return KeySet(self.published()).as_dict(private=False)

    def stray(self) -> RSAKey:
        with self.lock:
            if self._stray is None:
                self._stray = new_key()
            return self._stray

    def sign(self, claims: dict, *, stray=False) -> str:
        key = self.stray() if stray else self.current
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": key.kid}
        return jwt.encode(header, claims, key, algorithms=[ALGORITHM])

    def verify(self, token: str) -> dict | None:
        """The claims of a token signed with a published key, or None. Times are not checked:
        an id_token_hint may have expired (OpenID RP-Initiated Logout 1.0, section 2)."""
        try:
            return jwt.decode(token, KeySet(self.published()), algorithms=[ALGORITHM]).claims
        except (errors.JoseError, ValueError, TypeError):
            return None
