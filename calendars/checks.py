from django.core.checks import Error, register

from calendars import crypto


@register()
def google_token_keys_check(app_configs, **kwargs):
    problem = crypto.keys_problem()
    if problem and problem != crypto.NO_KEYS:
        return [
            Error(
                problem,
                hint="Generate one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'",
                id="calendars.E001",
            )
        ]
    return []
