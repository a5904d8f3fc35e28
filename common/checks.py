from django.core.checks import Error, register

from common import crypto


@register()
def field_encryption_keys_check(app_configs, **kwargs):
    """A malformed FIELD_ENCRYPTION_KEYS stops the start with a clear message, not the first stored secret read."""
    problem = crypto.keys_problem("FIELD_ENCRYPTION_KEYS")
    if problem:
        return [
            Error(
                problem,
                hint="Generate one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'",
                id="common.E001",
            )
        ]
    return []
