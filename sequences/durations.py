"""Durations as marketers write them: ``30m``, ``12h``, ``1d``, ``2w``, ``0``, or ISO-8601 (``P1D``,
``PT30M``, ``P1M``). Calendar units (months, years) only exist in ISO form or as ``1mo`` / ``1y`` and
are returned as ``relativedelta``; everything else is an exact ``timedelta``."""

from __future__ import annotations

import re
from datetime import timedelta

from dateutil.relativedelta import relativedelta

EXPECTED = "a duration like 0, 30m, 12h, 1d, 2w or ISO-8601 (P1D, PT30M)"

_SHORT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w|mo|y)\s*$")
_ISO = re.compile(
    r"^P(?!$)(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: object) -> timedelta | relativedelta:
    """Parse one duration; raise ``ValueError`` naming what was expected."""
    if isinstance(value, timedelta | relativedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected {EXPECTED}, got {value!r}")
    if isinstance(value, int) or value.strip() == "0":
        if int(value) != 0:
            raise ValueError(f"expected {EXPECTED} (a bare number needs a unit), got {value!r}")
        return timedelta(0)
    text = value.strip()
    short = _SHORT.match(text)
    if short:
        amount, unit = float(short.group(1)), short.group(2)
        if unit == "mo":
            return relativedelta(months=int(amount))
        if unit == "y":
            return relativedelta(years=int(amount))
        return timedelta(seconds=amount * _SECONDS[unit])
    iso = _ISO.match(text.upper())
    if iso:
        parts = {k: float(v) if v else 0.0 for k, v in iso.groupdict().items()}
        exact = timedelta(
            weeks=parts["w"], days=parts["d"], hours=parts["h"], minutes=parts["mi"], seconds=parts["s"]
        )
        if parts["y"] or parts["mo"]:
            return relativedelta(years=int(parts["y"]), months=int(parts["mo"])) + exact
        return exact
    raise ValueError(f"expected {EXPECTED}, got {value!r}")


def parse_exact_duration(value: object) -> timedelta:
    """Parse a duration that must be exact (no months or years), e.g. a gap between steps."""
    parsed = parse_duration(value)
    if isinstance(parsed, relativedelta):
        raise ValueError(f"expected an exact duration (no months or years here): {EXPECTED}, got {value!r}")
    if parsed < timedelta(0):
        raise ValueError(f"expected a positive duration, got {value!r}")
    return parsed


def format_duration(delta: timedelta) -> str:
    """A short human form: ``2d 4h``, ``35m``, ``0``."""
    total = int(delta.total_seconds())
    if total == 0:
        return "0"
    sign, total = ("-", -total) if total < 0 else ("", total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return sign + (" ".join(parts) if parts else f"{total}s")
