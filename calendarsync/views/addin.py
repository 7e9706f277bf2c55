"""Outlook-tillägg: the add-in's manifest, how an administrator deploys it (Microsoft 365
admin center or Exchange admin center), and what this integration's plug-in settings mean."""

from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_GET

from ..addin.manifest import BUTTON_LABEL, DOWNLOAD_FILENAME, manifest_url
from .common import get_integration, render_tab


@login_required
@require_GET
def integration_addin(request, code):
    integration = get_integration(request, code)
    context = {
        "manifest_url": manifest_url(),
        "manifest_filename": DOWNLOAD_FILENAME,
        "button_label": BUTTON_LABEL[0],  # the ribbon shows Swedish in a Swedish Outlook
    }
    return render_tab(request, "calendarsync/addin.html", integration, "addin", context)
