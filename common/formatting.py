"""How amounts are written: exactly in API responses and exports (`money`), for people in pages (`usd`)."""

from decimal import Decimal


def money(value) -> str | None:
    """A Decimal amount as a plain decimal string without trailing zeros (None stays None: no price known)."""
    return None if value is None else format(value.normalize(), "f")


def usd(value, significant: int = 3, *, exact: bool = False) -> str:
    """An amount for people to read: cents from $1 up (`$1,234.50`), three significant digits below
    (`$0.000974`, not `0.000974100000`). `None` (no price known) is a dash. `exact` (prices) keeps every
    significant digit: `$1.125`, `$0.075`."""
    if value is None:
        return "—"
    value = Decimal(value)
    if value == 0:
        return "$0"
    sign, value = ("-" if value < 0 else ""), abs(value)
    if exact:
        value = value.normalize()
        return f"{sign}${value:,.{max(-value.as_tuple().exponent, 2)}f}"
    if value >= 1:
        return f"{sign}${value:,.2f}"
    places = max(significant - 1 - value.adjusted(), 2)  # cents at least: $0.50, not $0.5
    rounded = value.quantize(Decimal(1).scaleb(-places)).normalize()
    if rounded.as_tuple().exponent > -2:
        rounded = rounded.quantize(Decimal("0.01"))
    return f"{sign}${format(rounded, 'f')}"
