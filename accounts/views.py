"""The `/account/` page for a person logged in with a Django session: tokens and preferences."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import selectors, services
from accounts.forms import PreferencesForm, TokenCreateForm
from accounts.models import APIToken
from common.audit import VIA_ACCOUNT, actor_from_request
from common.errors import AppError


def _render_page(request, *, new_token: str | None = None, token_form=None, preferences_form=None, status=200):
    context = {
        "tokens": selectors.api_tokens_for_user(user=request.user),
        "token_form": token_form or TokenCreateForm(preferences=services.user_preferences_get(user=request.user)),
        "preferences_form": preferences_form
        or PreferencesForm(instance=services.user_preferences_get(user=request.user)),
        "new_token": new_token,
    }
    return render(request, "accounts/account.html", context, status=status)


@login_required
def account_page(request):
    return _render_page(request)


@login_required
@require_POST
def token_create(request):
    form = TokenCreateForm(request.POST, preferences=services.user_preferences_get(user=request.user))
    if not form.is_valid():
        return _render_page(request, token_form=form, status=400)
    days = form.cleaned_data["expires_days"]
    try:
        _, plaintext = services.api_token_create_for_self(
            user=request.user,
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires_at=timezone.now() + timedelta(days=days) if days else None,
            rate_limit=form.cleaned_data["rate_limit"],
            monthly_budget_usd=form.cleaned_data["monthly_budget_usd"],
            by=actor_from_request(request, via=VIA_ACCOUNT),
        )
    except AppError as error:
        field = error.details.get("field")
        form.add_error(field if field in form.fields else None, error.message)
        return _render_page(request, token_form=form, status=400)
    # Rendered, not redirected: the plaintext is shown in this one response and stored nowhere.
    return _render_page(request, new_token=plaintext)


@login_required
@require_POST
def token_revoke(request, token_id: int):
    token = get_object_or_404(APIToken, pk=token_id, user=request.user)
    services.api_token_revoke(token=token, by=actor_from_request(request, via=VIA_ACCOUNT))
    messages.success(request, f"Token {token.display_prefix}… revoked.")
    return redirect("account:page")


@login_required
@require_POST
def preferences_update(request):
    form = PreferencesForm(request.POST, instance=services.user_preferences_get(user=request.user))
    if not form.is_valid():
        return _render_page(request, preferences_form=form, status=400)
    services.user_preferences_update(
        user=request.user, by=actor_from_request(request, via=VIA_ACCOUNT), **form.cleaned_data
    )
    messages.success(request, "Preferences saved.")
    return redirect("account:page")
