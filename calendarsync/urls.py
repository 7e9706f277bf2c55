from django.urls import include, path

from . import views

app_name = "calendarsync"

urlpatterns = [
    # Microsoft Sync menu (the company admin's pages)
    path("", views.overview, name="overview"),
    path("no-access/", views.no_access, name="no_access"),
    path("add/", views.integration_add, name="integration_add"),
    path("add/on-prem/", views.integration_add_ews, name="integration_add_ews"),
    path("<uuid:code>/", views.integration_settings, name="integration"),
    path("<uuid:code>/remove/", views.integration_remove, name="integration_remove"),
    path("<uuid:code>/connection/", views.integration_connection, name="integration_connection"),
    path(
        "<uuid:code>/connection/test/",
        views.integration_connection_test,
        name="integration_connection_test",
    ),
    path("<uuid:code>/rules/", views.rules, name="rules"),
    path("<uuid:code>/rules/new/", views.rule_new, name="rule_new"),
    path("<uuid:code>/rules/template/", views.rules_from_template, name="rules_from_template"),
    path("<uuid:code>/rules/preview/", views.rules_preview, name="rules_preview"),
    path("<uuid:code>/rules/undo/", views.rule_undo_delete, name="rule_undo_delete"),
    path("<uuid:code>/rules/<int:pk>/", views.rule_edit, name="rule_edit"),
    path("<uuid:code>/rules/<int:pk>/delete/", views.rule_delete, name="rule_delete"),
    path("<uuid:code>/rules/<int:pk>/move/", views.rule_move, name="rule_move"),
    path("<uuid:code>/users/", views.users, name="users"),
    path("<uuid:code>/users/add/", views.user_add, name="user_add"),
    path("<uuid:code>/users/import/", views.users_import, name="users_import"),
    path("<uuid:code>/users/export.csv", views.users_export, name="users_export"),
    path("<uuid:code>/users/<int:pk>/remove/", views.user_remove, name="user_remove"),
    path("<uuid:code>/users/suggest/", views.user_suggestions, name="user_suggestions"),
    path("<uuid:code>/users/source/", views.user_source, name="user_source"),
    path("<uuid:code>/users/groups/search/", views.group_search, name="group_search"),
    path("<uuid:code>/users/groups/follow/", views.group_follow, name="group_follow"),
    path(
        "<uuid:code>/users/groups/<int:pk>/unfollow/",
        views.group_unfollow,
        name="group_unfollow",
    ),
    path("<uuid:code>/users/groups/sync/", views.groups_sync, name="groups_sync"),
    path(
        "<uuid:code>/users/groups/confirm-removals/",
        views.removals_confirm,
        name="removals_confirm",
    ),
    path("<uuid:code>/addin/", views.integration_addin, name="integration_addin"),
    path("<uuid:code>/dashboard/", views.dashboard, name="dashboard"),
    path("<uuid:code>/dashboard/timeline/", views.dashboard_timeline, name="dashboard_timeline"),
    path("<uuid:code>/dashboard/activity/", views.dashboard_activity, name="dashboard_activity"),
    path("<uuid:code>/dashboard/status/", views.dashboard_status, name="dashboard_status"),
    path("<uuid:code>/progress/", views.sync_progress_banner, name="sync_progress"),
    # Each provider's own pages and notification endpoints.
    path("graph/", include("calendarsync.providers.graph.urls")),
]
