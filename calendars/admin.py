from django.contrib import admin

from calendars.connections import google_credential_revoke
from calendars.models import GoogleCredential
from common.audit import VIA_ADMIN, actor_from_request


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

    # Deleting a connection in the admin disconnects it as the account page does: revoked at Google first (a failure
    # there still deletes the local row), then deleted, and recorded in the audit log with the admin as actor.
    def delete_model(self, request, obj):
        google_credential_revoke(user=obj.user, by=actor_from_request(request, via=VIA_ADMIN))

    def delete_queryset(self, request, queryset):
        by = actor_from_request(request, via=VIA_ADMIN)
        for credential in queryset.select_related("user"):
            google_credential_revoke(user=credential.user, by=by)
