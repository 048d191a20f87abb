"""SMS length: GSM-7 / UCS-2 detection, units and segments as carriers bill them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.sms_length import GSM7, GSM7_BASIC, GSM7_EXTENSION, SmsLength, non_gsm_characters, sms_length

FRENCH_IN_GSM = "éèùìòàÉÇÄÖÑÜäöñüÅåÆæØøß"
FRENCH_NOT_IN_GSM = "çâêîôûëïœÀÂÈÊÎÔÛÙ«»’“”…–—\u00a0\u202f"


def test_the_basic_table_has_127_characters_plus_escape() -> None:
    assert len(GSM7_BASIC) == 127
    assert frozenset("€^{}[]~\\|\f") == GSM7_EXTENSION
    assert "`" not in GSM7


@pytest.mark.parametrize("char", FRENCH_IN_GSM)
def test_french_letters_in_gsm7(char: str) -> None:
    assert sms_length(char * 160) == SmsLength("GSM-7", 160, 1)


@pytest.mark.parametrize("char", FRENCH_NOT_IN_GSM)
def test_french_letters_that_force_ucs2(char: str) -> None:
    assert sms_length("Bonjour " + char) == SmsLength("UCS-2", 9, 1)
    assert non_gsm_characters("Ça va" + char + char) == [char]


def test_uppercase_c_cedilla_is_gsm7_but_lowercase_is_not() -> None:
    assert sms_length("Ça").encoding == "GSM-7"
    assert sms_length("ça").encoding == "UCS-2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsLength("GSM-7", 0, 1)),
        ("a" * 160, SmsLength("GSM-7", 160, 1)),
        ("a" * 161, SmsLength("GSM-7", 161, 2)),
        ("a" * 306, SmsLength("GSM-7", 306, 2)),
        ("a" * 307, SmsLength("GSM-7", 307, 3)),
        ("€" * 80, SmsLength("GSM-7", 160, 1)),
        ("€" * 81, SmsLength("GSM-7", 162, 2)),
        ("a" * 159 + "€", SmsLength("GSM-7", 161, 2)),
        # The escape and its character never straddle two segments: 152 + [€ moves] -> 3 segments.
        ("a" * 152 + "€" + "a" * 152, SmsLength("GSM-7", 306, 3)),
        ("a" * 151 + "€" + "a" * 153, SmsLength("GSM-7", 306, 2)),
        ("ç" * 70, SmsLength("UCS-2", 70, 1)),
        ("ç" * 71, SmsLength("UCS-2", 71, 2)),
        ("ç" * 134, SmsLength("UCS-2", 134, 2)),
        ("ç" * 135, SmsLength("UCS-2", 135, 3)),
        ("😀" * 35, SmsLength("UCS-2", 70, 1)),
        ("😀" * 36, SmsLength("UCS-2", 72, 2)),
        # A surrogate pair is never split: 66 units + 😀 moves to segment 2.
        ("ç" * 66 + "😀" + "ç" * 66, SmsLength("UCS-2", 134, 3)),
        ("ç" * 65 + "😀" + "ç" * 67, SmsLength("UCS-2", 134, 2)),
    ],
)
def test_lengths_and_segments(text: str, expected: SmsLength) -> None:
    assert sms_length(text) == expected


def test_a_typical_french_marketing_sms() -> None:
    text = "Spirale: Camille, une question sur le livre blanc ? Répondez à ce SMS. STOP au 36180"
    assert sms_length(text) == SmsLength("GSM-7", len(text), 1)
    assert sms_length(text.replace("'", "’") + " l’équipe") == SmsLength("UCS-2", len(text) + 9, 2)


@given(st.text(alphabet=sorted(GSM7), max_size=2000))
def test_gsm_text_segments_hold_their_units(text: str) -> None:
    length = sms_length(text)
    assert length.encoding == "GSM-7"
    assert length.units == len(text) + sum(text.count(c) for c in GSM7_EXTENSION)
    if length.units <= 160:
        assert length.segments == 1
    else:
        # Packing may waste at most one unit per segment boundary.
        assert -(-length.units // 153) <= length.segments <= -(-length.units // 152)


@given(st.text(min_size=1, max_size=600))
def test_any_text_is_measured_consistently(text: str) -> None:
    length = sms_length(text)
    assert length.segments >= 1
    assert length.encoding == ("GSM-7" if not non_gsm_characters(text) else "UCS-2")
    if length.encoding == "UCS-2":
        assert length.units == len(text.encode("utf-16-le")) // 2
        assert length.segments == 1 or length.units > 70
    # Appending a character never reduces the count.
    assert sms_length(text + "x").segments >= length.segments
