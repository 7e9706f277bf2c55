from django.contrib import admin

from .models import AbsenceReason, Company, Membership, Subscription


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ["name", "org_number", "onex_id", "created_at"]
    search_fields = ["name", "org_number", "onex_id"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "company", "role"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "company__name"]
    autocomplete_fields = ["user", "company"]
    list_select_related = ["user", "company"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "display_name",
        "email",
        "extension",
        "company",
        "has_diversion",
        "has_open_diversion",
        "is_admin",
        "active",
    ]
    list_filter = ["active", "has_diversion", "is_admin", "company"]
    search_fields = ["display_name", "email", "extension", "msisdn", "onex_id"]
    autocomplete_fields = ["company"]
    list_select_related = ["company"]
    readonly_fields = ["updated_at"]


@admin.register(AbsenceReason)
class AbsenceReasonAdmin(admin.ModelAdmin):
    list_display = ["code", "label_sv", "label_en", "company", "diversion_allowed", "active"]
    list_filter = ["active", "diversion_allowed", "company"]
    search_fields = ["code", "label_sv", "label_en"]
    autocomplete_fields = ["company"]
    list_select_related = ["company"]
