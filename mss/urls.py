from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from mozilla_django_oidc.views import OIDCAuthenticationRequestView, OIDCLogoutView

from calendarsync.providers.ews import webhooks as ews_webhooks
from mss.metrics import views as metrics_views
from onex.local_login import LocalLoginForm
from onex.telenorid import CallbackView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="calendarsync:overview"), name="home"),
    # Prometheus scrapes here (bearer token in production: mss/metrics/views.py).
    path("metrics", metrics_views.metrics, name="metrics"),
    path("login/", auth_views.LoginView.as_view(form_class=LocalLoginForm), name="login"),
    # Sign-out ends the Telenor ID session too (onex.telenorid.logout_url); POST only.
    path("logout/", OIDCLogoutView.as_view(), name="logout"),
    path(
        "oidc/authenticate/",
        OIDCAuthenticationRequestView.as_view(),
        name="oidc_authentication_init",
    ),
    path("oidc/callback/", CallbackView.as_view(), name="oidc_authentication_callback"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("microsoft-sync/", include("calendarsync.urls")),
    # The Outlook add-in: manifest, task pane, its API (stable URLs a deployed manifest names).
    path("addin/", include("calendarsync.addin.urls")),
    # Where customers' Exchange servers push notifications (the seed's firewall table).
    path(
        "MSS/services/EWSNotificationService",
        ews_webhooks.receive,
        name="ews_notifications",
    ),
]
