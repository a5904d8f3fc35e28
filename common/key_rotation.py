"""Re-encrypting every stored secret under the first key of its setting, for `manage.py rotate_encryption_keys`.

Two kinds of stored secret exist: `EncryptedTextField` columns (found here through the app registry, so every model
that declares one is covered, `ModelRoute.api_key` first among them) and stores with their own encryption that an app
registers with `register()` (the Google tokens of `calendars/`, under `GOOGLE_TOKEN_ENCRYPTION_KEYS`).

A value no key can decrypt is left exactly as it is and reported; each value is swapped only if it is still the one
read (compare-and-swap), so a concurrent write under the new key is never overwritten. Running it again is harmless.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.apps import apps
from django.db import connections, router

from common import crypto
from common.fields import EncryptedTextField


@dataclass
class RotationReport:
    name: str  # what was rotated, e.g. "FIELD_ENCRYPTION_KEYS"
    rotated: int = 0
    failed: list[str] = field(default_factory=list)  # "app.model:pk column" of values no key opens
    problem: str | None = None  # why nothing was rotated (unusable keys), if so
    note: str | None = None


@dataclass(frozen=True)
class Rotator:
    name: str
    count: Callable[[], int]
    rotate: Callable[[Callable[[], None]], RotationReport]  # called with on_row


_registered: dict[str, Rotator] = {}


def register(rotator: Rotator) -> None:
    """For an app's own encrypted store; called from its `AppConfig.ready()`."""
    _registered[rotator.name] = rotator


def encrypted_fields() -> list[tuple[type, EncryptedTextField]]:
    return [
        (model, f)
        for model in apps.get_models()
        for f in model._meta.concrete_fields
        if isinstance(f, EncryptedTextField)
    ]


def _select_and_update_sql(model, f, connection) -> tuple[str, str]:
    # Raw SQL so the ciphertext is read and compared as stored (the ORM would decrypt it, and re-encrypt a lookup).
    # The identifiers come from model metadata, quoted by the backend; every value is a parameter.
    quote = connection.ops.quote_name
    table, column, pk = quote(model._meta.db_table), quote(f.column), quote(model._meta.pk.column)
    select = f"SELECT {pk}, {column} FROM {table} WHERE {column} IS NOT NULL AND {column} <> '' ORDER BY {pk}"  # noqa: S608
    update = f"UPDATE {table} SET {column} = %s WHERE {pk} = %s AND {column} = %s"  # noqa: S608
    return select, update


def encrypted_fields_count() -> int:
    return sum(model._base_manager.exclude(**{f.attname: ""}).count() for model, f in encrypted_fields())


def encrypted_fields_rotate(on_row: Callable[[], None] | None = None) -> RotationReport:
    """Every `EncryptedTextField` value re-encrypted under the first key of its setting; the key derived from
    `SECRET_KEY` is accepted as an old key (installs that ran without `FIELD_ENCRYPTION_KEYS`)."""
    report = RotationReport(name="FIELD_ENCRYPTION_KEYS")
    fields = encrypted_fields()
    for setting in sorted({f.keys_setting for _, f in fields}):
        report.problem = crypto.keys_problem(setting)
        if report.problem:
            return report
    if not crypto.configured_keys():
        report.note = "FIELD_ENCRYPTION_KEYS is not set: values stay under the key derived from DJANGO_SECRET_KEY."
    for model, f in fields:
        connection = connections[router.db_for_write(model)]
        select, update = _select_and_update_sql(model, f, connection)
        with connection.cursor() as cursor:
            cursor.execute(select)
            rows = cursor.fetchall()
        for pk, ciphertext in rows:
            try:
                new = crypto.rotate(ciphertext, keys_setting=f.keys_setting)
            except crypto.DecryptionFailed:
                report.failed.append(f"{model._meta.label_lower}:{pk} {f.name}")
            else:
                if new != ciphertext:
                    with connection.cursor() as cursor:
                        cursor.execute(update, [new, pk, ciphertext])
                report.rotated += 1
            if on_row is not None:
                on_row()
    return report


def rotate_all(on_row: Callable[[], None] | None = None) -> list[RotationReport]:
    return [encrypted_fields_rotate(on_row), *(rotator.rotate(on_row) for rotator in _registered.values())]


def rows_count() -> int:
    return encrypted_fields_count() + sum(rotator.count() for rotator in _registered.values())
