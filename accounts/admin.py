from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from accounts import services
from accounts.forms import AdminPreferencesForm, AdminTokenForm
from accounts.models import APIToken, UserPreferences
from common.audit import VIA_ADMIN, actor_from_request

User = get_user_model()


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.exclude(revoked_at__lte=now).exclude(expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__lte=now)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        return queryset


@admin.register(APIToken)
class APITokenAdmin(admin.ModelAdmin):
    form = AdminTokenForm
    list_display = ["display_prefix", "name", "user", "scope_list", "last_used_at", "expires_at", "status"]
    list_filter = [StatusFilter, "created_at", "user"]
    search_fields = ["prefix", "name", "user__username", "user__email"]
    list_select_related = ["user"]
    readonly_fields = ["display_prefix", "created_at", "last_used_at", "revoked_at", "status"]
    actions = ["revoke_tokens", "rotate_tokens"]
    # The digest is never displayed: it is in no field list, list column or search field.

    @admin.display(description="prefix", ordering="prefix")
    def display_prefix(self, obj):
        return f"{obj.display_prefix}…"

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    def get_fields(self, request, obj=None):
        editable = ["user", "name", "scopes", "expires_at", "rate_limit", "monthly_budget_usd"]
        return (
            editable
            if obj is None
            else ["display_prefix", *editable, "created_at", "last_used_at", "revoked_at", "status"]
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            # A token stays with the user it was made for: moving it would let its holder act as someone else.
            return [*self.readonly_fields, "user"]
        return self.readonly_fields

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_revoked:
            return False  # revoked tokens are read-only
        return super().has_change_permission(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user" and not request.user.is_superuser:
            # A token made for someone else, shown to its maker once, would let staff act as that user: only a
            # superuser makes tokens for other people.
            kwargs["queryset"] = User.objects.filter(pk=request.user.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            # The admin's change history (LogEntry) is written by the admin itself after this.
            fields = {
                name: form.cleaned_data[name] for name in form.changed_data if name in services.TOKEN_EDITABLE_FIELDS
            }
            services.api_token_update(token=obj, by=actor_from_request(request, via=VIA_ADMIN), **fields)
            return
        token, plaintext = services.api_token_create(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires_at=form.cleaned_data["expires_at"],
            rate_limit=form.cleaned_data["rate_limit"],
            monthly_budget_usd=form.cleaned_data["monthly_budget_usd"],
            by=actor_from_request(request, via=VIA_ADMIN),
        )
        # The admin logs the addition of `obj` next: make it the stored token (its prefix names it in the history).
        obj.__dict__.update({k: v for k, v in token.__dict__.items() if k != "_state"})
        obj._state.adding = False
        request._djllm_new_tokens = [(token, plaintext)]

    def response_add(self, request, obj, post_url_continue=None):
        return self._show_plaintexts(request, "Token created")

    def _show_plaintexts(self, request, title):
        # Rendered in this one response, stored nowhere: the plaintext is shown once.
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "new_tokens": getattr(request, "_djllm_new_tokens", []),
        }
        return TemplateResponse(request, "admin/accounts/apitoken/plaintext.html", context)

    def _revoke(self, request, token: APIToken) -> None:
        services.api_token_revoke(token=token, by=actor_from_request(request, via=VIA_ADMIN))
        self.log_change(request, token, "Revoked.")

    def _rotate(self, request, token: APIToken) -> None:
        """Rotate one token; its replacement's plaintext joins those this response shows once."""
        new_token, plaintext = services.api_token_rotate(token=token, by=actor_from_request(request, via=VIA_ADMIN))
        self.log_change(request, token, f"Rotated: revoked, replaced by {new_token.display_prefix}….")
        self.log_addition(request, new_token, f"Created by rotating {token.display_prefix}….")
        request._djllm_new_tokens = [*getattr(request, "_djllm_new_tokens", []), (new_token, plaintext)]

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_tokens(self, request, queryset):
        count = 0
        for token in queryset.exclude(revoked_at__lte=timezone.now()):
            self._revoke(request, token)
            count += 1
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)

    @admin.action(description="Rotate selected tokens (new token, old one revoked now)", permissions=["change"])
    def rotate_tokens(self, request, queryset):
        request._djllm_new_tokens = []
        if not request.user.is_superuser:  # the new plaintext is shown here: only one's own, as for creating
            others = queryset.exclude(user=request.user).count()
            if others:
                self.message_user(
                    request, f"Not rotated: {others} token(s) of other users (only a superuser can).", messages.ERROR
                )
            queryset = queryset.filter(user=request.user)
        for token in queryset.exclude(revoked_at__lte=timezone.now()):
            self._rotate(request, token)
        return self._show_plaintexts(request, "Tokens rotated")

    # --- One token's revoke and rotate buttons, each behind a confirmation page --------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/revoke/", view(self.revoke_view), name="accounts_apitoken_revoke"),
            path("<path:object_id>/rotate/", view(self.rotate_view), name="accounts_apitoken_rotate"),
            *super().get_urls(),
        ]

    def _token_for(self, request, object_id, *, rotating: bool) -> APIToken:
        token = self.get_object(request, object_id)
        if token is None:
            raise Http404("No such token.")
        if not self.has_change_permission(request, token):  # revoked tokens, staff without the permission
            raise PermissionDenied
        if rotating and not request.user.is_superuser and token.user_id != request.user.pk:
            raise PermissionDenied  # the new plaintext is shown here: only one's own, as for creating
        return token

    def _confirm(self, request, token: APIToken, *, action: str, explanation: str):
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action.capitalize()} token {token.display_prefix}…?",
            "opts": self.model._meta,
            "original": token,
            "action": action,
            "explanation": explanation,
        }
        return TemplateResponse(request, "admin/accounts/apitoken/confirm.html", context)

    def revoke_view(self, request, object_id):
        token = self._token_for(request, object_id, rotating=False)
        if request.method != "POST":
            return self._confirm(
                request, token, action="revoke", explanation="Requests with this token are refused from now on."
            )
        self._revoke(request, token)
        self.message_user(request, f"Token {token.display_prefix}… revoked.", messages.SUCCESS)
        return redirect(reverse("admin:accounts_apitoken_change", args=[token.pk]))

    def rotate_view(self, request, object_id):
        token = self._token_for(request, object_id, rotating=True)
        if request.method != "POST":
            return self._confirm(
                request,
                token,
                action="rotate",
                explanation="A new token with the same settings replaces it; this one is revoked now. "
                "The new token is shown once, on the next page.",
            )
        self._rotate(request, token)
        return self._show_plaintexts(request, "Token rotated")


class PreferencesInline(admin.StackedInline):
    model = UserPreferences
    form = AdminPreferencesForm
    can_delete = False
    extra = 0
    min_num = 1


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    inlines = [PreferencesInline]

    def save_formset(self, request, form, formset, change):
        if formset.model is not UserPreferences or not change:
            return super().save_formset(request, form, formset, change)
        before = services.user_preferences_settings(user=form.instance)
        super().save_formset(request, form, formset, change)
        # Budgets and limits set here go to the audit log (as do changes made through the services).
        services.user_preferences_change_record(
            user=form.instance, before=before, by=actor_from_request(request, via=VIA_ADMIN)
        )
