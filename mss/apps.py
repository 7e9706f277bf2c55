from django.apps import AppConfig


class MssConfig(AppConfig):
    """The project itself as an app, so its signal receivers are connected at start."""

    name = "mss"

    def ready(self):
        from . import (
            middleware,  # noqa: F401 - the login receiver of the idle timeout
            request_id,  # noqa: F401 - clears the request's log id when it ends
            tasklog,  # noqa: F401 - Celery tasks' ids on their log lines
        )
