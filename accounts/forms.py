from django import forms

from accounts.models import ALL_SCOPES, APIToken, UserPreferences


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, required=False)
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in ALL_SCOPES], initial=ALL_SCOPES, widget=forms.CheckboxSelectMultiple
    )
    expires_days = forms.IntegerField(min_value=1, max_value=3650, required=False, label="Expires in (days)")


class PreferencesForm(forms.ModelForm):
    class Meta:
        model = UserPreferences
        fields = ["default_provider", "default_model", "language", "timezone"]


class AdminTokenForm(forms.ModelForm):
    """Admin add/change form: scopes as checkboxes; prefix and digest are never editable."""

    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in ALL_SCOPES], initial=ALL_SCOPES, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = APIToken
        fields = ["user", "name", "scopes", "expires_at", "rate_limit", "monthly_budget_usd"]
