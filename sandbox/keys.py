"""Signing keys the sandboxes publish: an RSA key with a self-signed certificate, as Entra's and
Exchange's token-signing keys are (their documents name a key by its certificate's thumbprint)."""

import base64
import hashlib
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from joserfc.jwk import RSAKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_key(common_name: str) -> dict:
    """An RSA key with a self-signed certificate: `jwk` (joserfc, to sign with), `kid` = `x5t`
    (base64url of the certificate's SHA-1) and `x5c` (base64 of its DER)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(private, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    # x5t is the certificate's SHA-1 thumbprint by definition (RFC 7517 §4.8).
    x5t = b64url(hashlib.sha1(der, usedforsecurity=False).digest())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "jwk": RSAKey.import_key(pem, {"kid": x5t, "use": "sig"}),
        "kid": x5t,
        "x5t": x5t,
        "x5c": base64.b64encode(der).decode(),
    }
