"""Probes shared by the fuzz and secret tests: a fingerprint of every table, the checks every
answer of the public API must pass, and hypothesis strategies of hostile requests."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import httpx
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlmodel import SQLModel

import models.tables  # noqa: F401  (registers every table on SQLModel.metadata)

#: Words that only a server-side failure puts in a body.
FAILURE_MARKERS = ("Traceback", "Internal Server Error", 'File "', "sqlalchemy.", "psycopg")


def database_state(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table, as sorted text: equal states mean nothing was written."""
    with engine.connect() as conn:
        return {
            table.name: sorted(repr(tuple(row)) for row in conn.execute(select(table)))
            for table in SQLModel.metadata.sorted_tables
        }


def row_counts(state: dict[str, list[str]]) -> dict[str, int]:
    """The row count of each table of a :func:`database_state`."""
    return {name: len(rows) for name, rows in state.items()}


def assert_clean_answer(response: httpx.Response, secrets: tuple[str, ...] = ()) -> None:
    """A 2xx-4xx answer that shows no traceback, internal error or secret."""
    assert 200 <= response.status_code < 500, (response.status_code, response.text[:300])
    text = response.content.decode("utf-8", errors="replace")
    for marker in FAILURE_MARKERS:
        assert marker not in text, (marker, text[:300])
    shown = text + repr(dict(response.headers))
    for secret in secrets:
        assert secret not in shown, "a secret appears in the answer"


_JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    _JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
form_fields = st.dictionaries(
    st.sampled_from(
        ["email", "phone", "country", "first_name", "consent_email", "consent_sms", "submission_id"]
    )
    | st.text(max_size=10),
    st.text(max_size=60),
    max_size=8,
)


def _form_encoded(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


bodies = st.one_of(
    st.binary(max_size=600),
    json_values.map(lambda value: json.dumps(value).encode()),
    form_fields.map(lambda fields: json.dumps(fields).encode()),
    form_fields.map(_form_encoded),
    st.sampled_from(
        [b"", b" ", b"null", b"[]", b"{}", b'{"email": null}', b"\xff\xfe", b"%%%&&==", b"a" * 70_000]
    ),
)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "text/plain",
        "text/xml",
        "application/octet-stream",
        "garbage/\u00e9",
    ]
)
junk_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
junk_base64 = st.binary(max_size=96).map(lambda raw: base64.b64encode(raw).decode())
signatures = st.none() | junk_text | junk_base64


def headers_of(content_type: str | None, extra: dict[str, str | None]) -> dict[bytes, bytes]:
    """Request headers without the ``None`` values (a missing header), as UTF-8 bytes so that
    non-ASCII junk reaches the server."""
    headers = {name.encode(): value.encode() for name, value in extra.items() if value is not None}
    if content_type is not None:
        headers[b"Content-Type"] = content_type.encode()
    return headers


def secrets_in(value: Any, secrets: tuple[str, ...]) -> list[str]:
    """The secrets that ``str`` or ``repr`` of ``value`` shows."""
    shown = f"{value}{value!r}"
    return [secret for secret in secrets if secret in shown]
