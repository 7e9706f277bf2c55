"""Secrets at rest: MultiFernet over the keys in settings.MSS_ENCRYPTION_KEYS (newest first)."""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.MSS_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    return fernet().decrypt(token.encode()).decode()


class EncryptedTextField(models.TextField):
    """A text column that only ever holds Fernet tokens; Python code sees plaintext.

    Empty strings stay empty (nothing to hide). Reading a value that no configured key can
    decrypt raises, rather than silently returning ciphertext as if it were the secret.
    """

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        try:
            return decrypt(value)
        except InvalidToken as exc:
            raise ValueError(
                f"{self.model.__name__}.{self.name} cannot be decrypted with MSS_ENCRYPTION_KEYS"
            ) from exc

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)


def mask(secret: str) -> str:
    """What an admin page may show of a secret: whether it is set, never its content."""
    return "••••••••" if secret else ""
