"""How amounts are written in API responses and exports."""


def money(value) -> str | None:
    """A Decimal amount as a plain decimal string without trailing zeros (None stays None: no price known)."""
    return None if value is None else format(value.normalize(), "f")
