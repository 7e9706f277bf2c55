"""Exchange Online's own addresses, included under the Microsoft Sync URLs (`calendarsync:`)."""

from django.urls import path

from . import views, webhooks

urlpatterns = [
    # Sign-in to Microsoft (proves the tenant), then admin consent (people).
    path("<uuid:code>/consent/", views.graph_consent_start, name="graph_consent_start"),
    path("signin/callback/", views.graph_signin_callback, name="graph_signin_callback"),
    path("consent/callback/", views.graph_consent_callback, name="graph_consent_callback"),
    # Change and lifecycle notifications (Microsoft).
    path("notifications/", webhooks.graph_notifications, name="graph_notifications"),
    path("lifecycle/", webhooks.graph_lifecycle, name="graph_lifecycle"),
]
