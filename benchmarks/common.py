"""Shared pieces of the benchmark scripts: a fresh database, synthetic leads, a null channel,
medians and the one-line JSON result every script prints with ``--json``."""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table

from channels.base import ChannelKind, EmailMessage, SendOutcome, SendResult, SmsMessage
from models.db import dispose_engine, make_engine, upgrade
from models.ids import ordered_id
from models.tables import Lead
from spirale.dispatch.report import DispatchReport

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
BENCH_DIR = Path("var") / "bench"


def fresh_sqlite(name: str) -> tuple[str, Engine]:
    """A new, migrated SQLite database under ``var/bench/``."""
    folder = BENCH_DIR / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder.resolve() / 'bench.db'}"
    dispose_engine(url)
    upgrade(url)
    return url, make_engine(url)


def lead_rows(start: int, count: int, now: datetime) -> list[dict[str, Any]]:
    """Synthetic French leads with consent on both channels."""
    return [
        {
            "id": ordered_id(),
            "email": f"contact{i}@entreprise{i % 997}.fr",
            "phone": f"+336{i:08d}",
            "first_name": "Camille",
            "last_name": "Martin",
            "company": f"Entreprise {i % 997}",
            "job_title": "Directrice marketing",
            "country": "FR",
            "timezone": "Europe/Paris",
            "consent_email": True,
            "consent_email_source": "bench",
            "consent_email_at": now,
            "consent_sms": True,
            "consent_sms_source": "bench",
            "consent_sms_at": now,
            "status": "warm",
            "customer_class": None,
            "owner": "alice",
            "source": "bench",
            "attributes": {},
            "created_at": now,
            "updated_at": now,
            "last_engaged_at": None,
            "last_contacted_at": None,
        }
        for i in range(start, start + count)
    ]


def insert_leads(engine: Engine, count: int, now: datetime, chunk: int = 20_000) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    for start in range(0, count, chunk):
        rows = lead_rows(start, min(chunk, count - start), now)
        with engine.begin() as conn:
            conn.execute(LEADS.insert(), rows)
        ids.extend(row["id"] for row in rows)
    return ids


@dataclass
class NullChannel:
    """An in-process provider that accepts everything instantly (measures our code, not a network)."""

    kind: ChannelKind
    name: str = "null"
    count: int = 0
    outbox_ids: list[str] = field(default_factory=list)

    def send(self, message: EmailMessage | SmsMessage) -> SendResult:
        self.count += 1
        return SendResult(provider_message_id=f"null-{message.outbox_id}")

    def send_many(self, messages: Sequence[EmailMessage | SmsMessage]) -> list[SendOutcome]:
        self.count += len(messages)
        return [
            SendOutcome(m.outbox_id, SendResult(provider_message_id=f"null-{m.outbox_id}"), None)
            for m in messages
        ]


def null_channels(settings: object) -> dict[str, NullChannel]:
    """The channel factory of dispatcher processes in a benchmark (pickled by name)."""
    return {"email": NullChannel(ChannelKind.EMAIL), "sms": NullChannel(ChannelKind.SMS)}


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    """Run ``fn`` (which returns how many items it processed); return (items, seconds)."""
    start = time.perf_counter()
    items = fn()
    return items, time.perf_counter() - start


def timed_tick(tick: Callable[[], DispatchReport], expected: int) -> tuple[DispatchReport, float]:
    """Run a dispatch tick that must send ``expected`` steps; return its report and its seconds."""
    start = time.perf_counter()
    report = tick()
    seconds = time.perf_counter() - start
    assert report.total_sent == expected, f"sent {report.total_sent} of {expected}: {report.summary()}"
    return report, seconds


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_child_memory_mb() -> float:
    """Peak resident memory of the largest child process waited for so far (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def emit(as_json: bool, result: dict[str, Any], lines: Sequence[str]) -> None:
    """Print the human lines, or one JSON object with name/value/unit/baseline/ratio."""
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        for line in lines:
            print(line)
