"""Fuzzing the loader and the validator: whatever the file holds, the answer is a Sequence or a list of
Diagnostics with sane positions, never an exception."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sequences.diagnostics import Diagnostic
from sequences.loader import load_sequence_file
from sequences.schema import GoldenSpacing, Sequence, SpacingSpec, Step, Variant, WindowSpec
from sequences.validate import validate_sequence_file

TEMPLATES = Path(__file__).parent / "broken" / "templates"
MODELS = (Sequence, Step, Variant, SpacingSpec, GoldenSpacing, WindowSpec)
# The schema's own keys (a fuzzer finds deep errors only with real keys), plus a typo.
KEYS = sorted(
    {field.alias or name for model in MODELS for name, field in model.model_fields.items()} | {"chanel"}
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["welcome", "email", "sms", "fax", "1d", "30m", "P1D", "mon-fri", "08:00-20:00", "x y"]),
    st.text(max_size=20),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=25,
)
YAML_CHARS = st.sampled_from([*":-[]{}&*!|>#'\"\t\n ,?%@`", "name", "steps", "id", "  ", "- id: a\n"])
YAMLISH = st.lists(st.one_of(YAML_CHARS, st.text(max_size=5)), max_size=40).map("".join)


def _check(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        sequence, diagnostics = load_sequence_file(path)
        assert (sequence is None) == bool(diagnostics)
        if sequence is not None:
            assert isinstance(sequence, Sequence)
        line_count = len(text.splitlines()) + 1  # YAML also breaks lines on \r, NEL, U+2028 ...
        for diagnostic in [*diagnostics, *validate_sequence_file(path, TEMPLATES)]:
            assert isinstance(diagnostic, Diagnostic)
            assert 1 <= diagnostic.line <= line_count + 1
            assert diagnostic.col >= 1 and diagnostic.message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(YAMLISH)
def test_random_yamlish_text_never_raises(text: str) -> None:
    _check(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_random_documents_never_raise(document: Any) -> None:
    _check(yaml.safe_dump(document, allow_unicode=True))


STEP = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["welcome", "check-in", "Bad Id"]),
        "channel": st.sampled_from(["email", "sms", "fax"]),
    },
    optional={
        "template": st.sampled_from(["welcome", "typo-variable", "unsafe", "missing"]),
        "text": st.sampled_from(["Bonjour STOP", "{{ lead.nope }}", "{% if %}", "{{ 'a' * 10**9 }}"]),
        "subject": st.sampled_from(["Bonjour {{ lead.first_name }}", "{{ x.__class__ }}"]),
        "if": st.sampled_from(["lead.phone", "lead.phone and", "lead.__class__", "range(10**9)|list"]),
        "wait": st.sampled_from(["1d", "3 days", 0, -1]),
    },
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=1, max_size=4))
def test_near_valid_sequences_never_raise(steps: list[dict[str, Any]]) -> None:
    _check(yaml.safe_dump({"name": "fuzz", "steps": steps}, allow_unicode=True))
