from django.conf import settings
from django.core.checks import Error, register

from accounts.rates import parse_rate


@register()
def rate_limit_setting_check(app_configs, **kwargs):
    errors = []
    for name, eid, blank_ok in (("RATE_LIMIT", "accounts.E001", False), ("RATE_LIMIT_PER_USER", "accounts.E002", True)):
        value = getattr(settings, name, "")
        if blank_ok and not value:
            continue
        try:
            parse_rate(value)
        except ValueError:
            errors.append(Error(f"{name}={value!r} is not of the form N/unit (e.g. 60/m).", id=eid))
    return errors


@register()
def throttle_rates_check(app_configs, **kwargs):
    from rest_framework.settings import api_settings

    errors = []
    for scope, rate in api_settings.DEFAULT_THROTTLE_RATES.items():
        if not rate:
            continue
        try:
            parse_rate(rate)
        except ValueError:
            name = "API_THROTTLE_RATE" if scope == "api" else f"API_THROTTLE_RATE_{scope.upper()}"
            errors.append(Error(f"{name}={rate!r} is not of the form N/unit (e.g. 300/m).", id="accounts.E003"))
    return errors
