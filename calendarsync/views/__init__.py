"""The Microsoft Sync pages, one module per page; urls.py names them here."""

from .dashboard import dashboard, dashboard_timeline
from .overview import (
    integration_add,
    integration_add_ews,
    integration_remove,
    no_access,
    overview,
)
from .rules import (
    rule_delete,
    rule_edit,
    rule_move,
    rule_new,
    rules,
    rules_from_template,
    rules_preview,
)
from .settings import integration_connection, integration_settings
from .users import user_add, user_remove, user_suggestions, users, users_export, users_import

__all__ = [
    "dashboard",
    "dashboard_timeline",
    "integration_add",
    "integration_add_ews",
    "integration_connection",
    "integration_remove",
    "integration_settings",
    "no_access",
    "overview",
    "rule_delete",
    "rule_edit",
    "rule_move",
    "rule_new",
    "rules",
    "rules_from_template",
    "rules_preview",
    "user_add",
    "user_remove",
    "user_suggestions",
    "users",
    "users_export",
    "users_import",
]
