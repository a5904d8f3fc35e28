"""The dashboard's filter form (a GET form): date range, user, token, model, and how cost is split.

Bad input (an impossible date, a range upside down or too long, an unknown user or token) is a form error shown
above the figures, never a server error."""

from datetime import date, timedelta

from django import forms
from django.contrib.auth import get_user_model

from accounts.models import APIToken
from llm.dashboard import SPLITS, DashboardFilter

DEFAULT_DAYS = 30
MAX_DAYS = 400
DATE_HELP = "YYYY-MM-DD, UTC"


class _DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self):
        super().__init__(format="%Y-%m-%d")


def _date_field(label: str) -> forms.DateField:
    return forms.DateField(
        label=label,
        required=False,
        input_formats=["%Y-%m-%d"],
        widget=_DateInput(),
        error_messages={"invalid": f"{label}: enter a date as YYYY-MM-DD, e.g. 2026-11-01."},
    )


class DashboardFilterForm(forms.Form):
    """`owner` set (the account page): the figures are that user's only, the user field is gone and a token must be
    one of theirs."""

    date_from = _date_field("From")
    date_to = _date_field("To")
    user = forms.CharField(label="User", required=False, max_length=150, help_text="username or id")
    token = forms.CharField(label="Token", required=False, max_length=40, help_text="djl_ prefix or id")
    model = forms.CharField(label="Model", required=False, max_length=100)
    split = forms.ChoiceField(
        label="Cost by", required=False, choices=[(split, split) for split in SPLITS], initial="provider"
    )

    def __init__(self, data, *, today: date, owner=None):
        if not data.get("date_from") and not data.get("date_to"):  # the default range, shown in the form
            data = data.copy()
            data["date_to"] = today.isoformat()
            data["date_from"] = (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        super().__init__(data)
        self.today = today
        self.owner = owner
        if owner is not None:
            del self.fields["user"]
        self.user_id: int | None = owner.pk if owner is not None else None
        self.token_id: int | None = None

    def clean_user(self) -> str:
        value = self.cleaned_data["user"].strip()
        if not value:
            return ""
        users = get_user_model().objects
        found = users.filter(username=value).values_list("pk", flat=True).first()
        if found is None and value.isascii() and value.isdigit() and int(value) < 2**63:
            found = users.filter(pk=int(value)).values_list("pk", flat=True).first()
        if found is None:
            raise forms.ValidationError(f"No user {value!r}.")
        self.user_id = found
        return value

    def clean_token(self) -> str:
        value = self.cleaned_data["token"].strip()
        if not value:
            return ""
        tokens = APIToken.objects.all()
        if self.owner is not None:
            tokens = tokens.filter(user=self.owner)
        found = tokens.filter(prefix=value.removeprefix("djl_")).values_list("pk", flat=True).first()
        if found is None and value.isascii() and value.isdigit() and int(value) < 2**63:
            found = tokens.filter(pk=int(value)).values_list("pk", flat=True).first()
        if found is None:
            raise forms.ValidationError(f"No token {value!r}" + (" among yours." if self.owner is not None else "."))
        self.token_id = found
        return value

    def clean(self):
        cleaned = super().clean()
        if "date_from" in self.errors or "date_to" in self.errors:
            return cleaned
        date_to = cleaned.get("date_to") or self.today
        date_from = cleaned.get("date_from") or date_to - timedelta(days=DEFAULT_DAYS - 1)
        if date_from > date_to:
            raise forms.ValidationError(f"The start date ({date_from}) is after the end date ({date_to}).")
        if (date_to - date_from).days + 1 > MAX_DAYS:
            raise forms.ValidationError(f"At most {MAX_DAYS} days at once; pick a shorter range.")
        cleaned["date_from"], cleaned["date_to"] = date_from, date_to
        cleaned["split"] = cleaned.get("split") or "provider"
        return cleaned

    def dashboard_filter(self) -> DashboardFilter:
        """The filter the valid form describes (call after `is_valid()`)."""
        data = self.cleaned_data
        return DashboardFilter(
            date_from=data["date_from"],
            date_to=data["date_to"],
            user_id=self.user_id,
            token_id=self.token_id,
            model=data["model"].strip(),
        )
