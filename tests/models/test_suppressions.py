"""Suppressions: stable hashes, idempotent writes, one query per batch at send time."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from sqlalchemy import Engine, event, select

from models.leads import normalize_email, normalize_phone
from models.suppressions import (
    SUPPRESSIONS,
    address_hash,
    canonical_address,
    is_suppressed,
    suppress,
    suppressed_hashes,
    unsuppress,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("channel", "variants", "canonical"),
    [
        ("email", ["anne@example.fr", " Anne@Example.FR ", "ANNE@EXAMPLE.FR"], "anne@example.fr"),
        ("email", ["Élodie@Exemple.fr", "élodie@exemple.fr"], "élodie@exemple.fr"),
        ("email", ["a@xn--bcher-kva.example", "a@bücher.example"], "a@bücher.example"),
        ("sms", ["+33612345678", "06 12 34 56 78", "0033 6 12 34 56 78", " +33 6 1234 5678"], "+33612345678"),
    ],
)
def test_an_address_hashes_the_same_however_it_is_written(
    channel: str, variants: list[str], canonical: str
) -> None:
    assert {address_hash(channel, variant) for variant in variants} == {sha(canonical)}


def test_the_hash_is_unkeyed_sha256_of_the_canonical_address() -> None:
    assert address_hash("email", "anne@example.fr") == sha("anne@example.fr")
    assert len(address_hash("sms", "+33612345678")) == 64


def test_unparseable_addresses_are_still_hashed_consistently() -> None:
    assert canonical_address("sms", "36 180") == "36180"
    assert canonical_address("email", "  Not An Email ") == "not an email"
    assert address_hash("sms", "36180") == address_hash("sms", "36 180")


def test_an_unknown_channel_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown suppression channel 'fax'"):
        address_hash("fax", "+33612345678")


@given(st.emails())
def test_the_email_fast_path_agrees_with_full_normalization(raw: str) -> None:
    try:
        expected = normalize_email(raw)
    except ValueError:
        assume(False)
        raise
    assert canonical_address("email", raw) == expected
    assert canonical_address("email", expected) == expected


@given(st.integers(min_value=600_000_000, max_value=799_999_999))
def test_the_phone_fast_path_agrees_with_full_normalization(number: int) -> None:
    national = f"0{number}"
    try:
        expected = normalize_phone(national)
    except ValueError:
        assume(False)
        raise
    assert canonical_address("sms", national) == canonical_address("sms", expected) == expected


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(SUPPRESSIONS)))


@pytest.mark.db
def test_suppress_is_idempotent_and_keeps_the_first_entry(engine: Engine) -> None:
    first: dict[str, Any] = {"reason": "unsubscribe", "source": "link", "now": NOW}
    with engine.begin() as conn:
        assert suppress(conn, channel="email", address="Anne@Example.fr", **first)
    with engine.begin() as conn:
        second: dict[str, Any] = {"reason": "bounce", "source": "sendgrid", "now": NOW}
        assert not suppress(conn, channel="email", address="anne@example.fr", **second)
    [row] = rows(engine)
    assert (row.channel, row.address, row.address_hash) == ("email", "anne@example.fr", sha(row.address))
    assert (row.reason, row.source, row.created_at) == ("unsubscribe", "link", NOW)


@pytest.mark.db
def test_an_erased_address_keeps_only_its_hash_and_stays_blocked(engine: Engine) -> None:
    with engine.begin() as conn:
        erasure: dict[str, Any] = {"reason": "gdpr-erasure", "source": None, "keep_address": False}
        suppress(conn, channel="sms", address="06 12 34 56 78", now=NOW, **erasure)
    [row] = rows(engine)
    assert row.address is None and row.address_hash == sha("+33612345678")
    with engine.connect() as conn:
        assert is_suppressed(conn, channel="sms", address="+33 6 12 34 56 78")
        assert not is_suppressed(conn, channel="email", address="+33 6 12 34 56 78")


@pytest.mark.db
def test_unsuppress_lifts_the_entry(engine: Engine) -> None:
    with engine.begin() as conn:
        suppress(conn, channel="sms", address="+33612345678", reason="stop", source="twilio", now=NOW)
        assert unsuppress(conn, channel="sms", address="06 12 34 56 78")
        assert not unsuppress(conn, channel="sms", address="06 12 34 56 78")
        assert not is_suppressed(conn, channel="sms", address="+33612345678")


@pytest.mark.db
def test_a_batch_is_checked_in_one_query(engine: Engine) -> None:
    addresses = [f"lead{i}@example.fr" for i in range(1_000)]
    blocked = set(addresses[::10])
    with engine.begin() as conn:
        for address in blocked:
            suppress(conn, channel="email", address=address, reason="unsubscribe", source="test", now=NOW)
        suppress(conn, channel="sms", address="+33612345678", reason="stop", source="test", now=NOW)
    statements: list[str] = []

    def count(*args: Any) -> None:
        if args[2].startswith("SELECT"):
            statements.append(args[2])

    hashes = {address_hash("email", address): address for address in addresses}
    hashes[address_hash("sms", "+33612345678")] = "+33612345678"  # suppressed, but on another channel
    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as conn:
            found = suppressed_hashes(conn, channel="email", hashes=hashes.keys())
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert {hashes[h] for h in found} == blocked


@pytest.mark.db
def test_an_empty_batch_finds_nothing(engine: Engine) -> None:
    with engine.connect() as conn:
        assert suppressed_hashes(conn, channel="sms", hashes=[]) == set()
