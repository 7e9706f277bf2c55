"""The Microsoft Sync pages, one module per page; urls.py names them here."""

from .activity import dashboard_activity
from .addin import integration_addin
from .dashboard import dashboard, dashboard_status, dashboard_timeline
from .groups import (
    group_follow,
    group_search,
    group_unfollow,
    groups_sync,
    removals_confirm,
    user_source,
)
from .live import sync_progress_banner
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
    rule_undo_delete,
    rules,
    rules_from_template,
    rules_preview,
)
from .settings import integration_connection, integration_connection_test, integration_settings
from .users import user_add, user_remove, user_suggestions, users, users_export, users_import

__all__ = [
    "dashboard",
    "dashboard_activity",
    "dashboard_status",
    "dashboard_timeline",
    "group_follow",
    "group_search",
    "group_unfollow",
    "groups_sync",
    "integration_add",
    "integration_add_ews",
    "integration_addin",
    "integration_connection",
    "integration_connection_test",
    "integration_remove",
    "integration_settings",
    "no_access",
    "overview",
    "removals_confirm",
    "rule_delete",
    "rule_edit",
    "rule_move",
    "rule_new",
    "rule_undo_delete",
    "rules",
    "rules_from_template",
    "rules_preview",
    "sync_progress_banner",
    "user_add",
    "user_remove",
    "user_source",
    "user_suggestions",
    "users",
    "users_export",
    "users_import",
]
