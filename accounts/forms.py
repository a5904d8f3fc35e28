from django import forms

from accounts.models import ALL_SCOPES, DEFAULT_SCOPES, APIToken, UserPreferences, rate_limit_validator
from accounts.selectors import token_scopes_grantable


class TokenCreateForm(forms.Form):
    """A user's own token: only the scopes an administrator allows that user are offered (the service checks again)."""

    name = forms.CharField(max_length=100, required=False)
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in ALL_SCOPES], initial=DEFAULT_SCOPES, widget=forms.CheckboxSelectMultiple
    )
    expires_days = forms.IntegerField(min_value=1, max_value=3650, required=False, label="Expires in (days)")
    rate_limit = forms.CharField(
        max_length=20, required=False, validators=[rate_limit_validator], help_text="Like 60/m. Blank: the default."
    )
    monthly_budget_usd = forms.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=0,
        required=False,
        label="Monthly budget (USD)",
        help_text="Blank: none.",
    )

    def __init__(self, *args, preferences: UserPreferences | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if preferences is None:
            return
        allowed = token_scopes_grantable(user=preferences.user, preferences=preferences)
        self.fields["scopes"].choices = [(s, s) for s in allowed]
        self.fields["scopes"].initial = [s for s in DEFAULT_SCOPES if s in allowed]
        if preferences.token_rate_limit_max:
            cap = preferences.token_rate_limit_max
            self.fields["rate_limit"].help_text = f"At most {cap} (set by an administrator). Blank: {cap}."
        if preferences.token_budget_max_usd is not None:
            cap = preferences.token_budget_max_usd
            self.fields["monthly_budget_usd"].help_text = f"At most ${cap} (set by an administrator). Blank: ${cap}."


class PreferencesForm(forms.ModelForm):
    class Meta:
        model = UserPreferences
        fields = ["default_provider", "default_model", "language", "timezone"]


class AdminTokenForm(forms.ModelForm):
    """Admin add/change form: scopes as checkboxes; prefix and digest are never editable."""

    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in ALL_SCOPES], initial=DEFAULT_SCOPES, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = APIToken
        fields = ["user", "name", "scopes", "expires_at", "rate_limit", "monthly_budget_usd"]


class AdminPreferencesForm(forms.ModelForm):
    """The preferences inline on the admin's user page: the token scopes the user may grant, as checkboxes."""

    token_scopes_allowed = forms.MultipleChoiceField(
        choices=[(s, s) for s in ALL_SCOPES],
        initial=ALL_SCOPES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Scopes the user may give own tokens",
        help_text="Tokens this user creates (account page, API) can have only these scopes. None: the user cannot "
        "create tokens.",
    )

    class Meta:
        model = UserPreferences
        fields = [
            "default_provider",
            "default_model",
            "language",
            "timezone",
            "monthly_budget_usd",
            "rate_limit",
            "token_scopes_allowed",
            "token_rate_limit_max",
            "token_budget_max_usd",
        ]
