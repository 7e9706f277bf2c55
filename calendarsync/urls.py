from django.urls import path

from . import views

app_name = "calendarsync"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("<uuid:code>/", views.integration_detail, name="integration"),
]
