"""The rate format of tokens, users and settings: `N/unit` or `N/Kunit` (`60/m`, `1000/h`, `10/5s`)."""

import re

_RATE = re.compile(r"([0-9]{1,9})/([0-9]{0,6})([smhd])")  # ASCII digits only, the whole string (no "\n" after it)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """(requests, seconds). ValueError for anything else, including a zero-length window."""
    match = _RATE.fullmatch(rate) if isinstance(rate, str) else None
    if match is None:
        raise ValueError(f"{rate!r} is not a rate like 60/m, 1000/h or 10/5s.")
    count, multiplier, unit = match.groups()
    seconds = _SECONDS[unit] * (int(multiplier) if multiplier else 1)
    if seconds <= 0:
        raise ValueError(f"{rate!r} has a window of zero seconds.")
    return int(count), seconds


def rate_within(rate: str, cap: str) -> bool:
    """True when `rate` allows no more than `cap`: no faster on average and no larger burst in one window."""
    count, seconds = parse_rate(rate)
    cap_count, cap_seconds = parse_rate(cap)
    return count <= cap_count and count * cap_seconds <= cap_count * seconds
