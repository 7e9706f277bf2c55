from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from . import activity_changes, activity_display, actors, attention, lifecycle, outbound, tasks
from .crypto import mask
from .models import (
    Activity,
    Booking,
    FollowedGroup,
    Integration,
    IntegrationNeedingAttention,
    MailboxSubscription,
    SyncedUser,
    SyncRule,
)

SYNC_STATE_FIELDS = ["sync_requested_at", "sync_started_at", "last_synced_at", "last_error"]
# What support changes in an integration that its admins see in the activity log (Aktiv is a
# transition of its own).
AUDITED_INTEGRATION_FIELDS = [
    "name",
    "days_ahead",
    "plugin_enabled",
    "plugin_defaults_only",
    "all_meetings_private",
    "ews_url",
    "ews_username",
    "ews_password",
]


class IntegrationAdminForm(forms.ModelForm):
    # Secrets are write-only: the field starts empty, and an empty answer keeps the stored one.
    ews_password = forms.CharField(
        label=_("password"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Leave empty to keep the stored password."),
    )

    def clean_ews_password(self):
        return self.cleaned_data["ews_password"] or self.instance.ews_password

    def clean_ews_url(self):
        url = self.cleaned_data["ews_url"]
        if url:
            try:
                outbound.check_url(url)
            except outbound.RefusedURL as refused:
                raise forms.ValidationError(refused.message) from None
        return url


class SyncRuleInline(admin.TabularInline):
    model = SyncRule
    extra = 0
    autocomplete_fields = ["reason"]


class FollowedGroupInline(admin.TabularInline):
    # The company admin picks the groups on the Användare tab; support reads them here.
    model = FollowedGroup
    extra = 0
    can_delete = False
    fields = ["name", "directory_id", "member_count", "matched", "read_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description=_("id in the directory"))
    def directory_id(self, obj):
        return obj.provider_id  # Entra ID's group id, or the distribution group's address

    @admin.display(description=_("members"))
    def member_count(self, obj):
        return len(obj.members)


@admin.register(Integration)
class IntegrationAdmin(admin.ModelAdmin):
    form = IntegrationAdminForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["name", "company", "kind", "status", "active", "days_ahead", "updated_at"]
    list_filter = ["kind", "status", "active"]
    search_fields = ["name", "company__name", "tenant_id", "code"]
    autocomplete_fields = ["company"]
    list_select_related = ["company"]
    readonly_fields = [
        "code",
        "status",
        "attention",
        "last_error",
        "consented_at",
        "password_set",
        # Katalog Synk is the company admin's choice on the Användare tab (it adds or
        # removes users); support sees it here.
        "user_source",
        "last_membership_run",
    ]
    inlines = [SyncRuleInline, FollowedGroupInline]

    @admin.display(description=_("last membership run"))
    def last_membership_run(self, obj):
        report = getattr(obj, "membership_report", None)
        if report is None:
            return "—"
        summary = gettext(
            "%(finished)s: %(added)d added, %(removed)d removed, %(without)d without a One X "
            "subscription, %(held)d removals held"
        ) % {
            "finished": formats.localize(timezone.localtime(report.finished_at)),
            "added": len(report.added),
            "removed": report.removed,
            "without": len(report.without_subscription),
            "held": len(report.held_removals),
        }
        if report.error:
            summary += " · " + gettext("last run failed: %(error)s") % {"error": report.error_text}
        return summary

    @admin.display(description=_("password stored"))
    def password_set(self, obj):
        return mask(obj.ews_password) or "—"

    def save_model(self, request, obj, form, change):
        # Aktiv goes through the state machine (it removes or restores One X entries).
        wanted = obj.active
        if change and "active" in form.changed_data:
            obj.active = form.initial["active"]
        super().save_model(request, obj, form, change)
        if change:
            fields = [name for name in AUDITED_INTEGRATION_FIELDS if name in form.changed_data]
            before = activity_changes.from_form(form, fields)
            if changes := activity_changes.diff(before, activity_changes.snapshot(obj, fields)):
                Activity.record(
                    obj,
                    "settings_changed",
                    actor=actors.staff(request),
                    subject=Activity.Subject.SETTING,
                    changes=changes,
                )
            lifecycle.set_active(obj, wanted, actor=actors.staff(request))

    # Deleting goes through the one removal path: One X entries and subscriptions first,
    # then the rows, in a task; the integration shows "being removed" until then.
    def delete_model(self, request, obj):
        lifecycle.remove(obj, actor=actors.staff(request))

    def delete_queryset(self, request, queryset):
        for integration in queryset:
            lifecycle.remove(integration, actor=actors.staff(request))

    def response_delete(self, request, obj_display, obj_id):
        response = super().response_delete(request, obj_display, obj_id)
        messages.info(request, gettext("The removal runs in the background."))
        return response


@admin.register(IntegrationNeedingAttention)
class IntegrationNeedingAttentionAdmin(admin.ModelAdmin):
    """Drift: read only, for whoever may see integrations; each row leads to the integration."""

    list_display = [
        "integration",
        "company_name",
        "kind",
        "status",
        "attention",
        "mailboxes_failing",
        "mailboxes_overdue",
        "subscriptions_failed",
        "subscriptions_expired",
    ]
    list_filter = ["kind", "status"]
    search_fields = ["name", "company__name", "code"]
    list_select_related = ["company"]
    list_display_links = None
    # Its read-only page names the integration only: no secret is ever shown.
    fields = ["name", "company", "kind", "status", "attention", "last_error"]

    def get_queryset(self, request):
        return attention.integrations_needing_attention(timezone.now()).select_related("company")

    def get_object(self, request, object_id, from_field=None):
        # Linked pages stay valid after the integration is well again.
        try:
            return self.model._default_manager.filter(pk=object_id).first()
        except (ValueError, ValidationError):
            return None

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("calendarsync.view_integration")

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("integration"), ordering="name")
    def integration(self, obj):
        url = reverse("admin:calendarsync_integration_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.name)

    @admin.display(description=_("company"), ordering="company__name")
    def company_name(self, obj):
        return obj.company.name

    @admin.display(description=_("mailboxes failing"), ordering="mailboxes_failing")
    def mailboxes_failing(self, obj):
        return obj.mailboxes_failing

    @admin.display(description=_("not read for 25 hours"), ordering="mailboxes_overdue")
    def mailboxes_overdue(self, obj):
        return obj.mailboxes_overdue

    @admin.display(description=_("subscriptions failed"), ordering="subscriptions_failed")
    def subscriptions_failed(self, obj):
        return obj.subscriptions_failed

    @admin.display(description=_("subscriptions expired"), ordering="subscriptions_expired")
    def subscriptions_expired(self, obj):
        return obj.subscriptions_expired


@admin.register(SyncRule)
class SyncRuleAdmin(admin.ModelAdmin):
    list_display = ["integration", "position", "action", "reason", "open_diversion"]
    list_filter = ["action"]
    search_fields = ["integration__name"]
    autocomplete_fields = ["integration", "reason"]
    list_select_related = ["integration", "reason"]


@admin.register(SyncedUser)
class SyncedUserAdmin(admin.ModelAdmin):
    list_display = ["email", "integration", "state", "last_synced_at"]
    list_filter = ["state", "integration__kind"]
    search_fields = ["email", "integration__name", "subscription__display_name"]
    autocomplete_fields = ["integration", "subscription"]
    list_select_related = ["integration"]
    readonly_fields = ["state", *SYNC_STATE_FIELDS]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:  # the same start as every other way of adding a user
            Activity.record(
                obj.integration,
                "user_added",
                actor=actors.staff(request),
                synced_user=obj,
                subject_label=obj.email,
            )
            tasks.start_syncing(SyncedUser.objects.filter(pk=obj.pk))

    # Deleting removes the user's One X entries and subscription first (a task).
    def delete_model(self, request, obj):
        tasks.request_user_removal(obj.pk, actor=actors.staff(request))

    def delete_queryset(self, request, queryset):
        for pk in queryset.values_list("pk", flat=True):
            tasks.request_user_removal(pk, actor=actors.staff(request))

    def response_delete(self, request, obj_display, obj_id):
        response = super().response_delete(request, obj_display, obj_id)
        messages.info(request, gettext("The removal runs in the background."))
        return response


@admin.register(MailboxSubscription)
class MailboxSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["provider_subscription_id", "synced_user", "status", "expires_at"]
    list_filter = ["status"]
    search_fields = ["provider_subscription_id", "synced_user__email"]
    list_select_related = ["synced_user"]
    exclude = ["client_state"]
    readonly_fields = [
        "synced_user",
        "provider_subscription_id",
        "expires_at",
        "watermark",
        "status",
        "last_error",
        "last_notification_at",
        "client_state_set",
    ]

    @admin.display(description=_("client state"))
    def client_state_set(self, obj):
        return mask(obj.client_state) or "—"


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin):
    list_display = ["synced_user", "start", "end", "forwarding", "reason_code", "return_at"]
    list_filter = ["forwarding", "all_day"]
    search_fields = ["synced_user__email", "external_id"]
    list_select_related = ["synced_user"]
    date_hierarchy = "start"

    def get_readonly_fields(self, request, obj=None):
        # Bookings mirror what One X holds: staff look, the sync writes.
        return [field.name for field in self.model._meta.fields]


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "company",
        "integration",
        "level",
        "who",
        "text",
        "concerns",
        "what_changed",
    ]
    list_filter = ["level", "kind", "actor_kind", "event"]
    search_fields = ["actor_label", "subject_label", "company__name", "integration__name"]
    list_select_related = ["company", "integration", "synced_user"]

    @admin.display(description=_("who"))
    def who(self, obj):
        return activity_display.actor_text(obj)

    @admin.display(description=_("message"))
    def text(self, obj):
        return obj.message

    @admin.display(description=_("concerns"))
    def concerns(self, obj):
        return activity_display.concerns_text(obj) or "—"

    @admin.display(description=_("what changed"))
    def what_changed(self, obj):
        return "; ".join(activity_display.change_lines(obj)) or "—"

    def get_readonly_fields(self, request, obj=None):
        fields = [field.name for field in self.model._meta.fields]
        return [*fields, "who", "text", "concerns", "what_changed"]
