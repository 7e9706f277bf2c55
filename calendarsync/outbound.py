"""Which addresses the service may call on an admin's say-so (the Exchange On Prem EWS URL).

An admin types the URL, so it must not turn the service into a way to reach its own network:
only https, no credentials in the URL, no IP literal in a legacy form (decimal, hex, octal),
and no host that is or resolves to loopback, link-local (cloud metadata), private (RFC 1918,
ULA), reserved or multicast addresses. `check_url` runs when the form is saved and again at
every connection, after DNS resolution (a name can be re-pointed later).
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext_lazy as _

BLOCKED_NAMES = {"localhost", "metadata", "metadata.google.internal", "metadata.goog"}


class RefusedURL(ValueError):
    """`message` says, in the admin's language, why the URL may not be used."""

    def __init__(self, message):
        super().__init__(str(message))
        self.message = message


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the seam tests patch; no network in tests)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def check_url(url: str) -> list[str]:
    """Refuse `url` (RefusedURL) unless it is https to a public host; its public addresses."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise RefusedURL(_("The EWS URL must start with https://."))
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise RefusedURL(_("The EWS URL must not contain a user name or password."))
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise RefusedURL(_("Enter the Exchange server's host name."))
    try:
        port = parts.port or 443
    except ValueError:
        raise RefusedURL(_("The EWS URL has an invalid port.")) from None
    if f"{host}:{port}" in settings.OUTBOUND_ALLOWED_HOSTS:
        # The EWS sandbox outside production (a setting; empty in production).
        return [host] if _ip_literal(host) else resolve(host, port)
    if host in BLOCKED_NAMES or host.endswith(".localhost"):
        raise RefusedURL(_("The EWS URL must point to the Exchange server, not to this service."))
    literal = _ip_literal(host)
    if literal is not None:
        _check_address(literal)
        return [str(literal)]
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        raise RefusedURL(
            _("The host name %(host)s could not be found. Check the EWS URL.") % {"host": host}
        ) from None
    for address in addresses:
        _check_address(ipaddress.ip_address(address.split("%", 1)[0]))
    return addresses


def _ip_literal(host: str):
    """The address if `host` is an IP literal; a legacy form (decimal, hex, octal, short) is
    refused, since people and parsers read those differently."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        packed = socket.inet_aton(host)  # accepts 2130706433, 0x7f000001, 0177.0.0.1, 127.1
    except OSError:
        return None
    raise RefusedURL(
        _("Write the server's address as a host name or a normal IP address (%(ip)s).")
        % {"ip": socket.inet_ntoa(packed)}
    )


def _check_address(address) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    # Loopback, link-local, private, reserved and unspecified addresses are all not global.
    if address.is_multicast or not address.is_global:
        raise RefusedURL(
            _(
                "The EWS URL points to an internal address (%(ip)s). Use the Exchange server's "
                "public address, reachable through the firewall."
            )
            % {"ip": address}
        )
