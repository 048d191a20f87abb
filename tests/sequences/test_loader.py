"""The loader: YAML -> Sequence, positions of every problem, and the library helpers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sequences.diagnostics import Diagnostic, breadcrumb, count_errors, count_warnings, sort_diagnostics
from sequences.loader import (
    MAX_NODES,
    find_sequence,
    load_library,
    load_sequence,
    load_sequence_file,
    parse_sequence_file,
    sequence_digest,
)
from sequences.schema import Channel
from spirale.errors import SequenceError

VALID = """\
name: nurture
description: Relance
spacing:
  golden: {first: 1d, max_gap: 30d}
steps:
  - id: welcome
    channel: email
    template: welcome
    subject: "Bonjour {{ lead.first_name }}"
  - id: check-in
    channel: sms
    text: "Une question ? STOP au 36180"
    if: "lead.phone and lead.consent.sms"
"""


def _write(tmp_path: Path, text: str, name: str = "nurture") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _messages(path: Path) -> list[str]:
    return [f"{d.line}:{d.col}: {d.message}" for d in load_sequence_file(path)[1]]


def test_diagnostic_prints_like_a_compiler() -> None:
    diagnostic = Diagnostic("library/x.yaml", 3, 7, "error", "unknown key 'chanel'")
    assert str(diagnostic) == "library/x.yaml:3:7: error: unknown key 'chanel'"
    assert diagnostic.is_error


def test_diagnostic_helpers_sort_and_count() -> None:
    found = [
        Diagnostic("b.yaml", 1, 1, "error", "z"),
        Diagnostic("a.yaml", 9, 1, "warning", "y"),
        Diagnostic("a.yaml", 2, 5, "error", "x"),
    ]
    assert [d.message for d in sort_diagnostics(found)] == ["x", "y", "z"]
    assert (count_errors(found), count_warnings(found)) == (2, 1)
    assert breadcrumb(("steps", 1, "variants", 0, "id")) == "steps[1].variants[0].id"


def test_a_valid_file_loads(tmp_path: Path) -> None:
    sequence, diagnostics = load_sequence_file(_write(tmp_path, VALID))
    assert diagnostics == []
    assert sequence is not None
    assert [s.channel for s in sequence.steps] == [Channel.EMAIL, Channel.SMS]
    assert sequence.steps[1].if_ == "lead.phone and lead.consent.sms"
    assert load_sequence(_write(tmp_path, VALID)) == sequence


def test_load_sequence_raises_with_every_diagnostic(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("channel: email", "chanel: email").replace("1d,", "1 day,"))
    with pytest.raises(SequenceError) as raised:
        load_sequence(path)
    lines = [str(d) for d in raised.value.diagnostics]
    assert lines == [
        f"{path}:4:19: error: spacing.golden.first: expected a duration like 0, 30m, 12h, 1d, 2w or "
        "ISO-8601 (P1D, PT30M), got '1 day'",
        f"{path}:7:5: error: unknown key 'chanel' in steps[0] (did you mean 'channel'?)",
    ]
    assert str(raised.value).startswith(f"{path} is not a valid sequence (2 errors):\n{lines[0]}")


def test_positions_of_keys_and_values(tmp_path: Path) -> None:
    parsed = parse_sequence_file(_write(tmp_path, VALID))
    assert parsed.source.position(("steps", 1, "text")) == (12, 11)
    assert parsed.source.position(("steps", 1, "text"), at_key=True) == (12, 5)
    # An unknown loc falls back to its nearest known ancestor.
    assert parsed.source.position(("steps", 1, "nope", 3)) == (10, 5)


def test_if_is_reported_under_its_yaml_name(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace('if: "lead.phone and lead.consent.sms"', "if: [lead.phone]"))
    assert _messages(path) == ["13:9: steps[1].if: expected text, got a list"]


def test_missing_key_is_reported_at_its_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("    channel: sms\n", ""))
    assert _messages(path) == ["10:5: missing required key 'channel' in steps[1]"]


def test_unknown_key_without_close_match_lists_the_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("  golden:", "  spiral: 2\n  golden:"))
    assert _messages(path) == [
        "4:3: unknown key 'spiral' in spacing (expected one of golden, fibonacci, fixed)"
    ]


def test_windows_with_an_unknown_channel_points_at_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("spacing:", "windows:\n  fax: anytime\nspacing:"))
    assert _messages(path) == ["4:3: unknown channel 'fax': expected one of email, sms, call, linkedin, task"]


def test_non_text_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID + "1: one\n")
    assert _messages(path) == ["14:1: key 1 must be a name (text)"]


def test_duplicate_top_level_key_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID + "description: Encore\n")
    assert _messages(path) == [
        "14:1: duplicate key 'description' (first defined at line 2; remove one of them)"
    ]


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    audience = "audience:\n  <<: {dormant_days: 90, exclude_contacted_within_days: 7}\n  dormant_days: 120\n"
    text = VALID.replace("steps:\n", audience + "steps:\n")
    sequence, diagnostics = load_sequence_file(_write(tmp_path, text))
    assert diagnostics == []
    assert sequence is not None and sequence.audience is not None
    assert (sequence.audience.dormant_days, sequence.audience.exclude_contacted_within_days) == (120, 7)


def test_alias_bomb_is_refused_without_expanding(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    path = _write(tmp_path, "audience:\n" + "".join(f"  {line}\n" for line in levels) + VALID)
    assert _messages(path) == [f"1:1: document too large (over {MAX_NODES} values once aliases are expanded)"]


def test_unreadable_bytes_are_a_diagnostic(tmp_path: Path) -> None:
    path = tmp_path / "nurture.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    assert _messages(path) == ["1:1: not UTF-8 text (invalid start byte at byte 6)"]


def test_a_missing_file_is_a_diagnostic(tmp_path: Path) -> None:
    assert _messages(tmp_path / "absent.yaml") == ["1:1: cannot read file: No such file or directory"]


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: !!python/object:os.system echo\n" + VALID.split("\n", 1)[1])
    (message,) = _messages(path)
    assert message.startswith("1:7: YAML syntax error: could not determine a constructor for the tag")


def test_deep_nesting_is_a_diagnostic(tmp_path: Path) -> None:
    path = _write(tmp_path, "audience: " + "[" * 5000 + "]" * 5000 + "\n" + VALID)
    (message,) = _messages(path)
    assert message.endswith("document nested too deeply")


# --- finding and loading the library ------------------------------------------------------------


@pytest.fixture
def sequences_dir(tmp_path: Path) -> Path:
    library = tmp_path / "sequences" / "library"
    library.mkdir(parents=True)
    _write(library, VALID)
    _write(library, VALID.replace("name: nurture", "name: incubator"), "incubator")
    (tmp_path / "sequences" / "forms.yaml").write_text("forms: {}\n", encoding="utf-8")
    return tmp_path / "sequences"


def test_find_sequence_by_name_or_path(sequences_dir: Path) -> None:
    in_library = sequences_dir / "library" / "nurture.yaml"
    assert find_sequence("nurture", sequences_dir) == in_library
    assert find_sequence(str(in_library), sequences_dir) == in_library


def test_find_sequence_lists_the_available_names(sequences_dir: Path) -> None:
    with pytest.raises(SequenceError) as raised:
        find_sequence("nurtur", sequences_dir)
    assert (
        str(raised.value)
        == "unknown sequence 'nurtur' (did you mean 'nurture'?); available: incubator, nurture"
    )
    with pytest.raises(SequenceError, match=r"no such sequence file: other/nurture\.yaml"):
        find_sequence("other/nurture.yaml", sequences_dir)


def test_load_library_reads_only_library_files(sequences_dir: Path) -> None:
    assert sorted(load_library(sequences_dir)) == ["incubator", "nurture"]


def test_load_library_reports_every_broken_file(sequences_dir: Path) -> None:
    _write(sequences_dir / "library", "name: broken\nsteps: 3\n", "broken")
    _write(sequences_dir / "library", "name: wrong\n" + VALID.split("\n", 1)[1], "misnamed")
    with pytest.raises(SequenceError) as raised:
        load_library(sequences_dir)
    assert [(Path(d.file).name, d.line) for d in raised.value.diagnostics] == [  # type: ignore[attr-defined]
        ("broken.yaml", 2),
        ("misnamed.yaml", 1),
    ]


def test_sequence_digest_is_a_short_sha256(sequences_dir: Path) -> None:
    path = sequences_dir / "library" / "nurture.yaml"
    assert sequence_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    before = sequence_digest(path)
    path.write_text(VALID + "# edited\n", encoding="utf-8")
    assert sequence_digest(path) != before
