"""What every Microsoft Sync page shares: the scoped integration, partial-or-page, resync."""

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.formats import number_format
from django.utils.translation import gettext_lazy, ngettext

from .. import tasks
from ..access import get_company_object_or_404
from ..models import Integration
from ..progress import SyncProgress, sync_progress

# What the admin must do, for each reason an integration needs attention.
ATTENTION_HINTS = {
    Integration.Attention.CONSENT_REVOKED: gettext_lazy(
        "The consent was withdrawn in Microsoft Entra ID (Enterprise Applications). Syncing "
        "is paused until an administrator approves again."
    ),
    Integration.Attention.CREDENTIALS_REJECTED: gettext_lazy(
        "The server no longer accepts the app's credentials. Syncing is paused: for Exchange "
        "Online contact Telenor support; for Exchange On Prem enter the service account's "
        "password again under Settings."
    ),
    Integration.Attention.PERMISSIONS_REMOVED: gettext_lazy(
        "The app's permission to read calendars was removed. Syncing is paused until an "
        "administrator approves again in Microsoft (or restores the service account's rights)."
    ),
}
# Exchange On Prem: the fix is on the customer's Exchange server, then Testa anslutningen.
EWS_ATTENTION_HINTS = {
    Integration.Attention.CREDENTIALS_REJECTED: gettext_lazy(
        "Exchange refused the service account's password. Syncing is paused: enter the "
        "password again on the Connection tab and test the connection."
    ),
    Integration.Attention.PERMISSIONS_REMOVED: gettext_lazy(
        "The service account may no longer act as the users (ApplicationImpersonation). "
        "Syncing is paused: run New-ManagementRoleAssignment -Role:ApplicationImpersonation "
        "for the account in the Exchange Management Shell, then test the connection."
    ),
    Integration.Attention.SERVER_UNTRUSTED: gettext_lazy(
        "The Exchange server's certificate is not trusted, or is for another host name. "
        "Syncing is paused: install a certificate from a public certificate authority for "
        "the host name in the EWS URL, then test the connection."
    ),
}


def attention_hint(integration) -> str:
    if integration.kind == Integration.Kind.EWS:
        return EWS_ATTENTION_HINTS.get(integration.attention, "")
    return ATTENTION_HINTS.get(integration.attention, "")


def get_integration(request, code) -> Integration:
    """The admin's own integration with this code; another company's is a 404."""
    return get_company_object_or_404(request, Integration, code=code)


def ews_firewall() -> dict:
    """The firewall table's addresses, from settings (they differ per deployment)."""
    return {
        "ews_notification_url": settings.EWS_NOTIFICATION_URL,
        "outgoing_addresses": settings.MSS_OUTGOING_ADDRESSES,
    }


def render_tab(request, template, integration, tab, context=None, *, partial=None):
    """A tab page, or — for an HTMX request that asks for a fragment — just that partial."""
    context = {
        "integration": integration,
        "tab": tab,
        "consent_url": consent_url(integration),
        "attention_hint": attention_hint(integration),
        "offer_consent": _offer_consent(integration),
        "app_display_name": settings.MS_APP_DISPLAY_NAME,
        **(ews_firewall() if integration.kind == integration.Kind.EWS else {}),
        **(context or {}),
    }
    if partial and request.htmx and not request.htmx.boosted:
        template = f"{template}#{partial}"
    elif "progress" not in context:
        context.update(banner_context(integration))  # the whole page shows the sync banner
    return render(request, template, context)


def progress_text(progress: SyncProgress) -> str:
    """ "Syncing 40 of 3,000 users…", in the reader's number format."""
    return ngettext(
        "Syncing %(pending)s of %(total)s user…",
        "Syncing %(pending)s of %(total)s users…",
        progress.total,
    ) % {
        "pending": number_format(progress.pending, force_grouping=True),
        "total": number_format(progress.total, force_grouping=True),
    }


def banner_context(integration, progress: SyncProgress | None = None) -> dict:
    """What templates/calendarsync/sync_progress.html needs: the progress and its sentence."""
    progress = progress or sync_progress(integration.users.all())
    return {
        "progress": progress,
        "progress_text": progress_text(progress) if progress.pending else "",
    }


def _offer_consent(integration) -> bool:
    """A consent (again) can help: it is missing, or withdrawn with the permissions."""
    status, attention = integration.Status, integration.Attention
    return integration.kind == integration.Kind.GRAPH and (
        integration.status == status.PENDING_CONSENT
        or (
            integration.status == status.NEEDS_ATTENTION
            and integration.attention != attention.CREDENTIALS_REJECTED
        )
    )


def consent_url(integration) -> str | None:
    """Where Exchange Online consent (re)starts; On Prem has none."""
    if integration.kind != Integration.Kind.GRAPH:
        return None
    return reverse("calendarsync:graph_consent_start", args=[integration.code])


def redirect_after_edit(request, path: str) -> HttpResponse:
    """After a successful edit: HTMX is told where to go (netbox's HX-Location), a plain form
    is redirected."""
    if not request.htmx:
        return redirect(path)
    response = HttpResponse(status=204)
    response["HX-Location"] = path
    return response


def tab_url(integration, name: str) -> str:
    return reverse(f"calendarsync:{name}", args=[integration.code])


def resync(integration) -> int:
    """Ask the sync core to resync every user of the integration; returns how many were asked.

    Settings and rule changes call this. A few queries whatever the number of users: the sync
    core stamps them with one UPDATE and enqueues bulk runs, only for users without a pending
    run, so a burst of saves still costs one run per mailbox.
    """
    users = integration.users.all()
    tasks.request_syncs(users)
    return users.count()
