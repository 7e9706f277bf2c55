from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OnexConfig(AppConfig):
    name = "onex"
    verbose_name = _("One X")
