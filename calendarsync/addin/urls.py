from django.urls import path

from . import api, pane, views_manifest

app_name = "addin"

# Stable URLs under PUBLIC_BASE_URL: the deployed manifest points at them.
urlpatterns = [
    # manifest (calendarsync/addin/manifest.py)
    path("manifest.xml", views_manifest.manifest, name="manifest"),
    # task pane and demo (calendarsync/addin/pane.py)
    path("taskpane/", pane.taskpane, name="taskpane"),
    # JSON API (calendarsync/addin/api.py)
    path("api/context/", api.context, name="api_context"),
    path("api/preview/", api.preview_booking, name="api_preview"),
    path("api/personal-rules/", api.personal_rules_view, name="api_personal_rules"),
    path("api/link/", api.link, name="api_link"),
]
