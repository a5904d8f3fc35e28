from django.db import models

from common import crypto


class EncryptedTextField(models.TextField):
    """A text field stored Fernet-encrypted; Python code sees plaintext, the database never does."""

    def __init__(self, *args, keys_setting: str = "FIELD_ENCRYPTION_KEYS", **kwargs):
        self.keys_setting = keys_setting
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if self.keys_setting != "FIELD_ENCRYPTION_KEYS":
            kwargs["keys_setting"] = self.keys_setting
        return name, path, args, kwargs

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return crypto.decrypt(value, keys_setting=self.keys_setting)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return crypto.encrypt(value, keys_setting=self.keys_setting)
