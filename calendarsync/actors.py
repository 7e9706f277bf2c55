"""Who did something, for the activity log: a signed-in person or a fixed kind of non-person.

Views call `admin(request)` (the company admin's pages) or `staff(request)` (Django admin);
background work passes `SYSTEM`, notifications from Outlook `OUTLOOK`, answers Microsoft sends
on its own `MICROSOFT`. An Actor travels into a Celery task as `as_task_arg()`.
"""

from dataclasses import dataclass

from django.db import models
from django.utils.translation import gettext_lazy as _


class ActorKind(models.TextChoices):
    ADMIN = "admin", _("administrator")
    STAFF = "staff", _("Telenor support")
    OUTLOOK = "outlook", "Outlook"
    MICROSOFT = "microsoft", "Microsoft"
    SYSTEM = "system", _("the system")


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    user_id: int | None = None
    # The person's email when it happened: the log keeps it after the account is deleted.
    label: str = ""

    def as_task_arg(self) -> dict:
        return {"kind": self.kind.value, "user_id": self.user_id, "label": self.label}

    @classmethod
    def from_task_arg(cls, value: dict | None) -> "Actor":
        if not value:
            return SYSTEM
        return cls(ActorKind(value["kind"]), value.get("user_id"), value.get("label", ""))


SYSTEM = Actor(ActorKind.SYSTEM)
OUTLOOK = Actor(ActorKind.OUTLOOK)
MICROSOFT = Actor(ActorKind.MICROSOFT)


def _person(kind: ActorKind, user) -> Actor:
    if user is None or not user.is_authenticated:
        return SYSTEM
    return Actor(kind, user.pk, (user.email or user.get_username())[:254])


def admin(request) -> Actor:
    """The company admin signed in to the Microsoft Sync pages."""
    return _person(ActorKind.ADMIN, request.user)


def staff(request) -> Actor:
    """A Telenor staff member working in Django admin."""
    return _person(ActorKind.STAFF, request.user)


def command(name: str) -> Actor:
    """A management command Telenor staff run on a server (no signed-in person)."""
    return Actor(ActorKind.STAFF, None, name)
