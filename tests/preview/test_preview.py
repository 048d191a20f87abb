"""``sequences.preview`` and ``spirale preview``: the files a marketer opens, and what they show."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from channels.unsubscribe import UnsubscribeSigner
from sequences.loader import find_sequence, load_library, load_sequence
from sequences.preview import Preview, PreviewRequest, build_preview, preview_lead
from sequences.rendering import Renderer
from spirale.cli import app
from spirale.settings import PROJECT_ROOT
from tests.preview.conftest import PUBLIC_URL, SECRET

runner = CliRunner()
# Friday 2026-12-18, 17:00 in Paris.
FRIDAY_5PM = datetime(2026, 12, 18, 16, 0, tzinfo=UTC)
LEAD: dict[str, Any] = {
    "id": "7d7cf2a4-0d5e-4c2a-9f59-3b0f3f0c1a11",
    "email": "ines@example.fr",
    "phone": "+33612345678",
    "first_name": "Inès",
    "last_name": "Petit",
    "company": "Petit & Fils",
    "timezone": "Europe/Paris",
    "country": "FR",
    "consent_email": True,
    "consent_sms": True,
}


def build(sequences_dir: Path, out: Path, lead: dict[str, Any] | None = LEAD, name: str = "tour") -> Preview:
    request = PreviewRequest(
        sequence=load_sequence(find_sequence(name, sequences_dir)),
        lead=lead,
        start=FRIDAY_5PM,
        sender={"name": "Spirale", "email": "marketing@spirale.example"},
        public_url=PUBLIC_URL,
        secret_key=SECRET,
    )
    return build_preview(request, renderer=Renderer(sequences_dir / "templates"), out_dir=out)


def test_every_step_and_variant_is_rendered_in_send_order(sequences_dir: Path, tmp_path: Path) -> None:
    preview = build(sequences_dir, tmp_path / "out")
    assert [e.title for e in preview.entries] == [
        "welcome",
        "nudge",
        "call",
        "offer · discount",
        "offer · audit",
        "accents",
    ]
    times = [e.planned.at for e in preview.entries]
    assert times == sorted(times)
    assert preview.errors == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "01-welcome.html",
        "01-welcome.txt",
        "02-nudge.txt",
        "03-call.txt",
        "04-offer-discount.html",
        "04-offer-discount.txt",
        "05-offer-audit.html",
        "05-offer-audit.txt",
        "06-accents.txt",
        "index.html",
    ]


def test_emails_are_written_as_sent_with_a_text_part_and_a_signed_unsubscribe_link(
    sequences_dir: Path, tmp_path: Path
) -> None:
    preview = build(sequences_dir, tmp_path)
    html = (tmp_path / "04-offer-discount.html").read_text(encoding="utf-8")
    assert "<p>Bonjour Inès (discount),</p>" in html
    link = re.search(r'href="([^"]+)"', html)
    assert link is not None
    url = link.group(1)
    assert url.startswith(f"{PUBLIC_URL}/unsubscribe/")
    claim = UnsubscribeSigner(SECRET).verify(url.rsplit("/", 1)[1])
    assert claim is not None and (claim.lead_id, claim.channel) == (LEAD["id"], "email")
    text = (tmp_path / "04-offer-discount.txt").read_text(encoding="utf-8")
    assert f"Se désinscrire ({url})" in text
    assert preview.entries[3].subject == "-20% pour Petit & Fils"


def test_sms_show_their_encoding_and_segments(sequences_dir: Path, tmp_path: Path) -> None:
    preview = build(sequences_dir, tmp_path)
    nudge, accents = preview.entries[1], preview.entries[5]
    assert nudge.text == "Spirale: Inès, une question ? STOP au 36180"
    assert nudge.sms is not None and (nudge.sms.encoding, nudge.sms.segments) == ("GSM-7", 1)
    assert accents.sms is not None and accents.sms.encoding == "UCS-2"  # the typographic apostrophe
    assert (tmp_path / "02-nudge.txt").read_text(encoding="utf-8") == nudge.text
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert f"GSM-7, {nudge.sms.units} units, 1 segment<" in index
    assert "UCS-2, " in index


def test_the_index_lists_local_times_why_they_moved_and_the_holdout(
    sequences_dir: Path, tmp_path: Path
) -> None:
    preview = build(sequences_dir, tmp_path)
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    welcome = preview.entries[0]
    assert welcome.planned.at.isoformat() == "2026-12-18T17:00:00+01:00"
    assert "Fri 2026-12-18 17:00 CET" in index
    nudge, call = preview.entries[1], preview.entries[2]
    assert (nudge.planned.at.isoformat(), nudge.planned.moved) == ("2026-12-19T17:00:00+01:00", None)
    assert (call.planned.at.isoformat(), call.planned.moved) == (
        "2026-12-21T10:00:00+01:00",
        "before 10:00: call window",
    )
    assert "Mon 2026-12-21 10:00 CET" in index
    assert "moved: before 10:00: call window" in index
    assert "Appeler Inès chez Petit &amp; Fils." in index
    assert "45% of leads; 10% held out (receive nothing)" in index
    assert 'href="04-offer-discount.html"' in index


def test_a_skipped_step_says_why(sequences_dir: Path, tmp_path: Path) -> None:
    preview = build(sequences_dir, tmp_path, lead={**LEAD, "phone": None, "consent_sms": False})
    nudge = preview.entries[1]
    assert nudge.planned.skipped
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "skipped for this lead: condition <code>lead.phone and lead.consent.sms</code> is false" in index


def test_the_preview_works_offline(sequences_dir: Path, tmp_path: Path) -> None:
    build(sequences_dir, tmp_path)
    for page in tmp_path.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["']?(https?:)?//(?!spirale\.example/unsubscribe/)""", text), page
        assert "<script" not in text and "@import" not in text and "<link" not in text


def test_a_step_that_fails_to_render_is_listed_with_its_error(sequences_dir: Path, tmp_path: Path) -> None:
    (sequences_dir / "templates" / "hello.html.j2").write_text("{{ lead.fax }}", encoding="utf-8")
    preview = build(sequences_dir, tmp_path)
    assert [e.title for e in preview.errors] == ["welcome", "offer · discount", "offer · audit"]
    assert "undefined variable 'lead.fax'" in (preview.errors[0].error or "")
    assert "cannot render: template &#39;hello.html.j2&#39;" in (tmp_path / "index.html").read_text(
        encoding="utf-8"
    )


def test_a_new_preview_replaces_the_old_files_only(sequences_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "07-gone.html").write_text("old", encoding="utf-8")
    (tmp_path / "notes.md").write_text("mine", encoding="utf-8")
    build(sequences_dir, tmp_path)
    assert not (tmp_path / "07-gone.html").exists()
    assert (tmp_path / "notes.md").read_text(encoding="utf-8") == "mine"


def test_the_sample_lead_is_used_without_a_lead_file(sequences_dir: Path, tmp_path: Path) -> None:
    preview = build(sequences_dir, tmp_path, lead=None)
    assert preview.entries[1].text == "Spirale: Camille, une question ? STOP au 36180"


def test_consent_may_be_nested_in_a_lead_file() -> None:
    lead = preview_lead({"email": "a@example.fr", "consent": {"sms": True}})
    assert lead["consent"] == {"email": False, "sms": True}
    assert lead["first_name"] == ""


def test_every_shipped_sequence_previews_without_errors(tmp_path: Path) -> None:
    shipped = PROJECT_ROOT / "sequences"
    for name in load_library(shipped):
        preview = build(shipped, tmp_path / name, name=name)
        assert preview.errors == [], name
        assert preview.index.is_file()


# --- the command line ----------------------------------------------------------------------------


def preview_cli(*args: str) -> Result:
    return runner.invoke(app, ["preview", *args], env={"COLUMNS": "200"})


def test_the_command_writes_the_preview_and_says_where(sequences_dir: Path, tmp_path: Path) -> None:
    lead = tmp_path / "lead.json"
    lead.write_text(json.dumps(LEAD), encoding="utf-8")
    out = tmp_path / "out"
    result = preview_cli("tour", "--lead", str(lead), "--out", str(out), "--start", "2026-12-18T17:00")
    assert result.exit_code == 0, result.output
    assert "tour: 6 messages (3 email, 2 sms, 1 call)" in result.stdout
    assert f"open {(out / 'index.html').resolve().as_uri()}" in result.stdout
    assert "Fri 2026-12-18 17:00 CET" in (out / "index.html").read_text(encoding="utf-8")


def test_the_command_exits_1_when_a_step_fails_to_render(sequences_dir: Path, tmp_path: Path) -> None:
    (sequences_dir / "templates" / "hello.html.j2").write_text("{{ lead.fax }}", encoding="utf-8")
    result = preview_cli("tour", "--out", str(tmp_path), "--start", "2026-12-18T17:00")
    assert result.exit_code == 1
    assert "error: step welcome: template 'hello.html.j2'" in result.stderr
    assert (tmp_path / "index.html").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tuor",), "unknown sequence 'tuor' (did you mean 'tour'?)"),
        (("tour", "--start", "demain"), "is not an ISO 8601 instant"),
        (("tour", "--lead", "/nonexistent/lead.json"), "cannot read lead file"),
    ],
)
def test_usage_errors_are_one_clear_line(sequences_dir: Path, args: tuple[str, ...], message: str) -> None:
    result = preview_cli(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_secrets_never_appear_in_the_preview_or_its_output(sequences_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = preview_cli("tour", "--out", str(out), "--start", "2026-12-18T17:00")
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    for path in out.iterdir():
        assert SECRET not in path.read_text(encoding="utf-8"), path
