from django.conf import settings
from django.core.checks import Error, register

from accounts.models import rate_limit_validator


@register()
def rate_limit_setting_check(app_configs, **kwargs):
    try:
        rate_limit_validator(settings.RATE_LIMIT)
    except Exception:
        return [Error(f"RATE_LIMIT={settings.RATE_LIMIT!r} is not of the form N/unit (e.g. 60/m).", id="accounts.E001")]
    return []
