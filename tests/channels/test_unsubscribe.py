"""Signed unsubscribe tokens and the RFC 8058 headers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from channels.unsubscribe import (
    UnsubscribeClaim,
    UnsubscribeSigner,
    list_unsubscribe_headers,
    unsubscribe_url,
)

SIGNER = UnsubscribeSigner(SecretStr("test-secret"))
URL_SAFE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

lead_ids = st.one_of(st.uuids().map(str), st.text(min_size=1, max_size=80))
channels = st.sampled_from(["email", "sms", "all"])


@given(lead_id=lead_ids, channel=channels)
def test_tokens_round_trip_and_are_url_safe(lead_id: str, channel: str) -> None:
    token = SIGNER.sign(lead_id=lead_id, channel=channel)

    assert URL_SAFE.fullmatch(token)
    assert SIGNER.verify(token) == UnsubscribeClaim(lead_id=lead_id, channel=channel)


@given(lead_id=lead_ids, channel=channels, data=st.data())
def test_any_single_character_change_is_rejected(lead_id: str, channel: str, data: st.DataObject) -> None:
    token = SIGNER.sign(lead_id=lead_id, channel=channel)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from("AQgw_-.x=").filter(lambda c: c != token[index]))

    tampered = token[:index] + replacement + token[index + 1 :]

    assert SIGNER.verify(tampered) is None


@given(garbage=st.text(max_size=600))
def test_arbitrary_strings_never_verify_and_never_raise(garbage: str) -> None:
    assert SIGNER.verify(garbage) is None


def test_a_token_signed_with_another_key_is_rejected() -> None:
    forged = UnsubscribeSigner("attacker-key").sign(lead_id="lead-42", channel="email")

    assert SIGNER.verify(forged) is None


def test_a_signature_cannot_be_moved_to_another_lead() -> None:
    mine = SIGNER.sign(lead_id="lead-1", channel="email")
    victim = SIGNER.sign(lead_id="lead-2", channel="email")

    spliced = victim.split(".")[0] + "." + mine.split(".")[1]

    assert SIGNER.verify(spliced) is None


def test_the_channel_is_part_of_the_signature() -> None:
    email_token = SIGNER.sign(lead_id="lead-1", channel="email")
    sms_payload = SIGNER.sign(lead_id="lead-1", channel="sms").split(".")[0]

    assert SIGNER.verify(sms_payload + "." + email_token.split(".")[1]) is None


def test_bad_inputs_to_sign_are_refused() -> None:
    with pytest.raises(ValueError, match="channel"):
        SIGNER.sign(lead_id="lead-1", channel="Email:all")
    with pytest.raises(ValueError, match="lead id"):
        SIGNER.sign(lead_id="", channel="email")
    with pytest.raises(ValueError, match="empty"):
        UnsubscribeSigner("")


def test_unsubscribe_url() -> None:
    assert (
        unsubscribe_url("https://spirale.example/", "abc.def")
        == "https://spirale.example/unsubscribe/abc.def"
    )


def test_list_unsubscribe_headers_follow_rfc_8058() -> None:
    headers = list_unsubscribe_headers(
        "https://spirale.example/unsubscribe/abc.def", "unsubscribe@spirale.example"
    )

    assert headers == {
        "List-Unsubscribe": (
            "<https://spirale.example/unsubscribe/abc.def>, "
            "<mailto:unsubscribe@spirale.example?subject=unsubscribe>"
        ),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert list_unsubscribe_headers("https://x.example/u/t", "mailto:u@x.example") == {
        "List-Unsubscribe": "<https://x.example/u/t>, <mailto:u@x.example?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
