from django.contrib import admin

from common.models import AuditEvent


class ReadOnlyAdmin:
    """Rows the app writes (usage records, running totals, the audit log): shown, never added, edited or deleted,
    superusers included."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """The audit log, written by the services only."""

    list_display = ["at", "action", "actor_description", "via", "ip", "target_type", "target_label"]
    list_filter = ["action", "via", "target_type", ("actor", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["actor_description", "target_label", "target_id", "ip", "action"]
    date_hierarchy = "at"
    list_select_related = ["actor"]
    readonly_fields = [
        "at",
        "actor",
        "actor_description",
        "ip",
        "via",
        "action",
        "target_type",
        "target_id",
        "target_label",
        "details",
    ]
    fields = readonly_fields
