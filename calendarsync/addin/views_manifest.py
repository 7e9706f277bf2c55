"""GET /addin/manifest.xml: the manifest, to upload in the Microsoft 365 or Exchange admin
center (?download=1 names it as a file). Public: it holds only this service's URLs."""

from django.http import HttpResponse
from django.views.decorators.http import require_GET

from .manifest import DOWNLOAD_FILENAME, render_manifest


@require_GET
def manifest(request):
    response = HttpResponse(render_manifest(), content_type="application/xml; charset=utf-8")
    if request.GET.get("download") == "1":
        response["Content-Disposition"] = f'attachment; filename="{DOWNLOAD_FILENAME}"'
    return response
