"""Testa anslutningen: the EWS connection checked step by step, each with what to do.

The steps run in order and stop at the first failure (a later step cannot succeed then):
the address (public, https), TLS, the service account (exchangelib's version probe), and
impersonation of one mailbox. The push endpoint is judged as far as we can see it from here.
Only a test where every step passed connects the integration (the view decides that).
"""

from dataclasses import dataclass

import requests
from django.conf import settings
from django.utils.translation import gettext as _
from exchangelib import errors as ews_errors

from calendarsync import outbound

from ..base import ProviderError
from . import client


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""
    warning: bool = False  # informs, does not block


def run(integration, mailbox: str) -> list[Step]:
    steps: list[Step] = []
    for check in (_address, _tls, _account, _impersonation):
        step = check(integration, mailbox)
        steps.append(step)
        if not step.ok:
            return steps
    steps.append(_push_endpoint())
    return steps


def _address(integration, mailbox) -> Step:
    name = _("The server's address")
    try:
        addresses = outbound.check_url(integration.ews_url)
    except outbound.RefusedURL as exc:
        return Step(name, False, str(exc.message), _("Enter the public https address of EWS."))
    return Step(name, True, ", ".join(addresses))


def _tls(integration, mailbox) -> Step:
    name = _("Encryption (TLS)")
    session = requests.Session()
    session.trust_env = False
    session.mount("https://", client.TrustedCAAdapter())
    try:
        session.get(integration.ews_url, timeout=(5, 15), allow_redirects=False)
    except requests.exceptions.SSLError:
        return Step(
            name,
            False,
            _("The server's certificate is not trusted, or is for another host name."),
            _(
                "Install a certificate from a public certificate authority on the Exchange "
                "server, issued for the host name in the EWS URL."
            ),
        )
    except requests.RequestException:
        return Step(
            name,
            False,
            _("The server did not answer."),
            _(
                "Open the firewall for TCP 443 from %(addresses)s to the Exchange server, and "
                "check the host name."
            )
            % {"addresses": ", ".join(settings.MSS_OUTGOING_ADDRESSES)},
        )
    finally:
        session.close()
    return Step(name, True, _("The certificate is valid."))


def _account(integration, mailbox) -> Step:
    name = _("The service account")
    # Probe afresh: a new password or URL must be the one tried, and a recorded build would
    # let exchangelib skip the (authenticated) probe.
    integration.ews_build = ""
    client.forget(integration)
    try:
        version = client.server_version(integration)
    except Exception as exc:  # noqa: BLE001 - classified below
        error = _classified(exc)
        if error.code == "unauthorized":
            return Step(
                name,
                False,
                _("The user name or password was refused."),
                _(
                    "Check the user name (DOMAIN\\account) and the password, and that the "
                    "account is not locked out."
                ),
            )
        return Step(name, False, str(error), _("Check the EWS URL and try again."))
    integration.ews_build = str(version.build or "")
    type(integration).objects.filter(pk=integration.pk).update(ews_build=integration.ews_build)
    # The build names the server (15.2 = Exchange 2019); the API version is the schema it speaks.
    label = " ".join(str(part) for part in (version.build, f"({version.api_version})") if part)
    return Step(name, True, _("Signed in. Exchange version: %(version)s") % {"version": label})


def _impersonation(integration, mailbox) -> Step:
    name = _("Impersonation")
    try:
        client.account(integration, mailbox).calendar.refresh()
    except Exception as exc:  # noqa: BLE001 - classified below
        original = exc
        denied = ews_errors.ErrorImpersonateUserDenied | ews_errors.ErrorAccessDenied
        if isinstance(original, denied):
            return Step(
                name,
                False,
                _("The service account may not act as %(mailbox)s.") % {"mailbox": mailbox},
                _(
                    "Run New-ManagementRoleAssignment -Name:TelenorMSSImpersonation "
                    "-Role:ApplicationImpersonation -User:%(account)s in the Exchange "
                    "Management Shell."
                )
                % {"account": integration.ews_username.split("\\")[-1]},
            )
        if isinstance(original, ews_errors.ErrorNonExistentMailbox):
            return Step(
                name,
                False,
                _("Exchange has no mailbox %(mailbox)s.") % {"mailbox": mailbox},
                _("Test with the address of a mailbox on this Exchange server."),
            )
        return Step(name, False, str(_classified(exc)), _("Try again in a few minutes."))
    return Step(name, True, _("The calendar of %(mailbox)s could be read.") % {"mailbox": mailbox})


def _push_endpoint() -> Step:
    name = _("Notifications to MSS")
    url = settings.EWS_NOTIFICATION_URL
    if not url.startswith("https://"):
        return Step(
            name,
            False,
            _("Exchange will send changes to %(url)s, which is not an https address.")
            % {"url": url},
            _("Only a test environment uses such an address."),
            warning=True,
        )
    return Step(
        name,
        True,
        _("Exchange sends changes to %(url)s: open the firewall for it (TCP 443 outgoing).")
        % {"url": url},
    )


def _classified(exc: Exception) -> ProviderError:
    try:
        return client.classify(exc)
    except Exception as unknown:  # noqa: BLE001 - shown, never raised to the admin
        return ProviderError(f"{type(unknown).__name__}: {unknown}", code="unknown")
