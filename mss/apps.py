from django.apps import AppConfig


class MssConfig(AppConfig):
    """The project itself as an app, so its signal receivers are connected at start."""

    name = "mss"

    def ready(self):
        from . import middleware  # noqa: F401 - the login receiver of the idle timeout
