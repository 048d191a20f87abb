"""SMS length: encoding, length units and segment count, as carriers bill them.

GSM-7 (the 3GPP TS 23.038 / GSM 03.38 default alphabet) fits 160 units in one segment and 153 per
segment once a message is split (the rest carries the concatenation header). Characters of the
extension table (``€ ^ { } [ ] ~ \\ |`` and form feed) cost two units (escape + character) and are never
split across two segments. One character outside the alphabet switches the whole message to UCS-2:
70 UTF-16 code units in one segment, 67 per segment when split, and a surrogate pair (an emoji) is
never split either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("€^{}[]~\\|\f")
GSM7 = GSM7_BASIC | GSM7_EXTENSION

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

Encoding = Literal["GSM-7", "UCS-2"]


class SmsLength(NamedTuple):
    """How an SMS text is encoded, how many units it takes and how many segments are billed."""

    encoding: Encoding
    units: int
    segments: int


def sms_length(text: str) -> SmsLength:
    """Encoding, units and segments of ``text``. An empty text is one (empty) segment."""
    if GSM7.issuperset(text):
        extended = sum(text.count(c) for c in GSM7_EXTENSION)
        units = len(text) + extended
        if units <= GSM7_SINGLE:
            return SmsLength("GSM-7", units, 1)
        if not extended:
            return SmsLength("GSM-7", units, -(-units // GSM7_PART))
        return SmsLength("GSM-7", units, _packed_segments(text, GSM7_PART, _gsm_cost))
    units = len(text.encode("utf-16-le")) // 2
    if units <= UCS2_SINGLE:
        return SmsLength("UCS-2", units, 1)
    if units == len(text):
        return SmsLength("UCS-2", units, -(-units // UCS2_PART))
    return SmsLength("UCS-2", units, _packed_segments(text, UCS2_PART, _utf16_cost))


def non_gsm_characters(text: str) -> list[str]:
    """The distinct characters of ``text`` that force UCS-2, in order of appearance."""
    return list(dict.fromkeys(c for c in text if c not in GSM7))


def _gsm_cost(char: str) -> int:
    return 2 if char in GSM7_EXTENSION else 1


def _utf16_cost(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def _packed_segments(text: str, capacity: int, cost_of: Callable[[str], int]) -> int:
    """Fill segments in order; a two-unit character that does not fit starts the next segment."""
    segments, used = 1, 0
    for char in text:
        cost_here = cost_of(char)
        if used + cost_here > capacity:
            segments, used = segments + 1, 0
        used += cost_here
    return segments
