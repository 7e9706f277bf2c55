from django.urls import path

app_name = "addin"

# Stable URLs under PUBLIC_BASE_URL: the deployed manifest points at them.
urlpatterns = [
    # manifest (calendarsync/addin/manifest.py)
    # task pane and demo (calendarsync/addin/pane.py)
    # JSON API (calendarsync/addin/api.py)
]
