from django.contrib import admin

from calendars.models import GoogleCredential


@admin.register(GoogleCredential)
class GoogleCredentialAdmin(admin.ModelAdmin):
    """Status and account only: the encrypted token columns are in no field, column, filter or search."""

    list_display = ["user", "email", "status", "scope_list", "expiry", "connected_at", "refreshed_at"]
    list_filter = ["status"]
    search_fields = ["user__username", "email"]
    list_select_related = ["user"]
    fields = ["user", "email", "status", "scope_list", "expiry", "connected_at", "refreshed_at", "last_error"]
    readonly_fields = fields

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    def has_add_permission(self, request):
        return False  # connections are made by the user's consent only

    def has_change_permission(self, request, obj=None):
        return False
