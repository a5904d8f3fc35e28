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
