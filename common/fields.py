from django.db import models

from common import crypto


class EncryptedTextField(models.TextField):
    """A text field stored Fernet-encrypted; Python code sees plaintext, the database never does.

    A stored value no configured key can decrypt is read as `crypto.UnreadableSecret` instead of failing the whole
    query (one bad row must not take down every row beside it), and is written back unchanged: ciphertext is never
    dropped because the key in use today cannot read it.
    """

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
        try:
            return crypto.decrypt(value, keys_setting=self.keys_setting)
        except crypto.DecryptionFailed:
            return crypto.UnreadableSecret(value, self.keys_setting)

    def to_python(self, value):
        if isinstance(value, crypto.UnreadableSecret):
            return value
        return super().to_python(value)

    def get_prep_value(self, value):
        if isinstance(value, crypto.UnreadableSecret):
            return value.ciphertext
        value = super().get_prep_value(value)
        if not value:
            return value
        return crypto.encrypt(value, keys_setting=self.keys_setting)
