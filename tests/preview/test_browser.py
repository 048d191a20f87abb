"""The preview opened in a real browser: headless Chromium renders the index and an email from
disk, offline, and the DOM it builds shows every step and the unsubscribe link."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from channels.unsubscribe import UnsubscribeSigner
from tests.preview.conftest import PUBLIC_URL, SECRET
from tests.preview.test_preview import LEAD, build

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)"
)


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM Chromium builds for ``page`` (scripts run, layout done), offline."""
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def test_chromium_renders_the_index_and_an_email_with_its_unsubscribe_link(
    sequences_dir: Path, tmp_path: Path
) -> None:
    preview = build(sequences_dir, tmp_path / "out")
    profile = tmp_path / "chromium-profile"

    index = dump_dom(preview.index, profile)
    assert '<h1>Preview: <span id="sequence-name">tour</span></h1>' in index
    titles = re.findall(r'<strong class="step-title">([^<]+)</strong>', index)
    assert titles == [entry.title for entry in preview.entries]
    assert len(re.findall(r'<a class="unsubscribe" href="https://spirale\.example/unsubscribe/', index)) == 3

    email = dump_dom(preview.out_dir / "01-welcome.html", profile)
    assert "Bonjour Inès (base)," in email
    link = re.search(r'<a href="(https://spirale\.example/unsubscribe/[^"]+)">Se désinscrire</a>', email)
    assert link is not None, email[:2000]
    claim = UnsubscribeSigner(SECRET).verify(link.group(1).removeprefix(f"{PUBLIC_URL}/unsubscribe/"))
    assert claim is not None and claim.lead_id == LEAD["id"]
