"""A small sequence library with templates, written per test, and the settings that point at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spirale.settings import get_settings

SECRET = "preview-test-secret"
PUBLIC_URL = "https://spirale.example"

TOUR = """\
name: tour
description: Every kind of step
timezone: Europe/Paris
spacing:
  golden: {first: 1d, ratio: 1.618, max_gap: 14d}
windows:
  email: {days: mon-fri, hours: "08:30-18:30", skip_holidays: true}
steps:
  - id: welcome
    channel: email
    template: hello
    subject: "Bonjour {{ lead.first_name }}"
    wait: 0
  - id: nudge
    channel: sms
    text: "{{ sender.name }}: {{ lead.first_name }}, une question ? STOP au 36180"
    if: "lead.phone and lead.consent.sms"
  - id: call
    channel: call
    note: "Appeler {{ lead.first_name }} chez {{ lead.company }}."
  - id: offer
    channel: email
    variants:
      - {id: discount, weight: 45, template: hello, subject: "-20% pour {{ lead.company }}"}
      - {id: audit, weight: 45, template: hello, subject: "Un audit offert"}
    holdout: 10
  - id: accents
    channel: sms
    text: "Dernière chance : l’offre s’arrête ce soir. STOP au 36180"
"""

HELLO_HTML = """\
<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>{{ step.id }}</title></head>
<body><p>Bonjour {{ lead.first_name }} ({{ variant or "base" }}),</p>
<p>{{ sender.name }} vous écrit.</p>
<p><a href="{{ unsubscribe_url }}">Se désinscrire</a></p></body></html>
"""


@pytest.fixture
def sequences_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "sequences"
    (root / "library").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "library" / "tour.yaml").write_text(TOUR, encoding="utf-8")
    (root / "templates" / "hello.html.j2").write_text(HELLO_HTML, encoding="utf-8")
    monkeypatch.setenv("SPIRALE_SEQUENCES_DIR", str(root))
    monkeypatch.setenv("SPIRALE_SECRET_KEY", SECRET)
    monkeypatch.setenv("SPIRALE_PUBLIC_URL", PUBLIC_URL)
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()
