from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CalendarsyncConfig(AppConfig):
    name = "calendarsync"
    verbose_name = _("Calendar sync")

    def ready(self):
        from . import receivers  # noqa: F401 - answers to the onex directory's signals
