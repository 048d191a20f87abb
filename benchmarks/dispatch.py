"""Dispatch throughput: ``python -m benchmarks.dispatch [--leads N] [--json]``.

N leads are enrolled (half in an email-first sequence, half in an SMS-first one) and all due on a
Monday morning. Measured side by side in one run:

- **baseline**: the raw-SQL claim + advance loop (``UPDATE ... RETURNING`` 1,000 rows, then one
  batched advance) over the same rows: the machine's limit for claiming and advancing alone;
- **the protocol's writes alone** (SQLite): the same four commits a batch as the real path (claim;
  outbox rows ``pending`` + fenced advance; ``sending``; the result) as raw SQL over ready-made
  values: the ceiling of SQLite's single writer for this protocol;
- **one process**: the real dispatch path (claim -> send-time checks -> render -> outbox rows ->
  ``sending`` -> in-process null provider -> record -> advance) over the same rows, reset;
- **value**: the same tick run by ``--processes`` dispatcher processes (default: one per core), each
  claiming its own shard, as ``spirale dispatch --processes N`` runs it (``spirale.dispatch.parallel``),
  over the same rows, reset. Process start-up is inside the measured time.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, bindparam, text, update

from benchmarks.common import (
    emit,
    fresh_sqlite,
    insert_leads,
    null_channels,
    peak_child_memory_mb,
    peak_memory_mb,
    timed,
    timed_tick,
)
from models.bulk import insert_sqlite_values, sqlite_instant
from models.claims import claim_due
from models.db import make_engine, upgrade, write_transaction
from models.ids import ordered_hex
from models.tables import Enrollment, OutboxMessage
from sequences.catalog import SequenceCatalog
from spirale.dispatch import Dispatcher
from spirale.dispatch.parallel import default_processes, dispatch_in_processes
from spirale.enrollment import enroll_leads
from spirale.settings import Settings

SEQUENCES = Path(__file__).parent / "sequences"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Paris
TARGET = 20_000
ENROLLMENTS = Enrollment.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]


def setup(engine: Engine, leads: int, catalog: SequenceCatalog) -> None:
    lead_ids = insert_leads(engine, leads, NOW - timedelta(days=1))
    half = len(lead_ids) // 2
    with engine.begin() as conn:
        for name, ids in (("bench-email", lead_ids[:half]), ("bench-sms", lead_ids[half:])):
            enroll_leads(
                conn, lead_ids=ids, sequence=catalog.get(name), version=catalog.version(name), now=NOW
            )


def reset(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM outbox"))
        conn.execute(
            update(ENROLLMENTS).values(
                step_index=0,
                next_due_at=NOW,
                state="active",
                claimed_by=None,
                lease_until=None,
                last_step_at=None,
            )
        )


def raw_claim_advance(engine: Engine) -> int:
    advance = (
        update(ENROLLMENTS)
        .where(ENROLLMENTS.c.id == bindparam("b_id"))
        .values(step_index=1, next_due_at=bindparam("b_due"), claimed_by=None, lease_until=None)
    )
    total = 0
    while True:
        with engine.begin() as conn:
            rows = claim_due(conn, now=NOW, worker_id="raw", limit=1000, lease=timedelta(minutes=5))
            if not rows:
                return total
            conn.execute(advance, [{"b_id": r.id, "b_due": NOW + timedelta(days=1)} for r in rows])
        total += len(rows)


OUTBOX_COLUMNS = (
    "id",
    "enrollment_id",
    "lead_id",
    "sequence_name",
    "step_id",
    "cycle",
    "attempt",
    "channel",
    "provider",
    "to_address",
    "variant",
    "transactional",
    "state",
    "subject",
    "segments",
    "error_code",
    "error_message",
    "created_at",
    "updated_at",
)
_ADVANCE = (
    "UPDATE enrollments SET step_index = ?, cycle = ?, state = ?, next_due_at = ?, last_step_at = ?, "
    "exit_reason = ?, updated_at = ?, claimed_by = ?, lease_until = ? WHERE id = ? AND claimed_by = ?"
)
_SENDING = (
    "UPDATE outbox SET state = 'sending', updated_at = ? "
    "WHERE id IN (SELECT value FROM json_each(?)) AND +state = 'pending' RETURNING id"
)
_SENT = (
    "UPDATE outbox SET state = ?, provider_message_id = ?, segments = ?, error_code = ?, "
    "error_message = ?, sent_at = ?, retry_at = ?, updated_at = ? WHERE id = ? AND state = ?"
)


def raw_protocol(engine: Engine) -> int:
    """The database work of the exactly-once protocol alone, as raw SQL on ready-made values, in
    its four commits per batch: claim; outbox rows ``pending`` + fenced advance; ``sending``;
    ``sent``. No checks, no rendering, no sending: the most the machine allows this protocol."""
    total = 0
    stamp, due = sqlite_instant(NOW), sqlite_instant(NOW + timedelta(days=1))
    while True:
        with write_transaction(engine) as conn:
            rows = claim_due(conn, now=NOW, worker_id="raw", limit=1000, lease=timedelta(minutes=5))
        if not rows:
            return total
        ids = [ordered_hex() for _ in rows]
        fixed = ("email", "null", "lead@example.fr", None, 0, "pending", "Bonjour", None, None, None)
        outbox = [
            (oid, r.id.hex, r.lead_id.hex, r.sequence_name, "s1", r.cycle, 1, *fixed, stamp, stamp)
            for oid, r in zip(ids, rows, strict=True)
        ]
        advances = [
            (1, r.cycle, "active", due, stamp, None, stamp, None, None, r.id.hex, "raw") for r in rows
        ]
        with write_transaction(engine) as conn:
            insert_sqlite_values(conn, OUTBOX, OUTBOX_COLUMNS, outbox)
            conn.exec_driver_sql(_ADVANCE, advances)  # type: ignore[arg-type]
        with write_transaction(engine) as conn:
            moved = [row[0] for row in conn.exec_driver_sql(_SENDING, (stamp, json.dumps(ids)))]
        sent = [
            ("sent", f"null-{oid}", None, None, None, stamp, None, stamp, oid, "sending") for oid in moved
        ]
        with write_transaction(engine) as conn:
            conn.exec_driver_sql(_SENT, sent)  # type: ignore[arg-type]
        total += len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file under var/bench)")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--via-prefect", action="store_true", help="the dispatch flow's batch tasks vs a naive flow"
    )
    parser.add_argument(
        "--naive", type=int, default=500, help="messages for the naive one-task-per-message flow"
    )
    parser.add_argument("--workers", help="dispatcher processes, e.g. 2,4,8 (with --db for PostgreSQL)")
    parser.add_argument(
        "--processes",
        type=int,
        default=default_processes(),
        help="dispatcher processes of the measured tick (default: one per core)",
    )
    args = parser.parse_args()
    if args.via_prefect:
        from benchmarks.prefect_dispatch import main_via_prefect

        main_via_prefect(args)
        return
    if args.workers:
        from benchmarks.dispatch_workers import main_workers, parse_workers

        args.workers = parse_workers(args.workers)
        main_workers(args)
        return

    catalog = SequenceCatalog.open(SEQUENCES)
    if args.db:
        upgrade(args.db)
        engine = make_engine(args.db)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM outbox; DELETE FROM variant_assignments; DELETE FROM enrollments"))
            conn.execute(text("DELETE FROM leads"))
    else:
        _, engine = fresh_sqlite("dispatch")
    setup(engine, args.leads, catalog)

    raw_n, raw_s = timed(lambda: raw_claim_advance(engine))
    reset(engine)
    floor = None
    if engine.dialect.name == "sqlite":
        floor_n, floor_s = timed(lambda: raw_protocol(engine))
        floor = floor_n / floor_s
        reset(engine)
    url = engine.url.render_as_string(hide_password=False)
    settings = Settings(  # type: ignore[call-arg]
        database_url=url, sequences_dir=SEQUENCES, dispatch_batch_size=args.batch, secret_key="bench"
    )
    channels = null_channels(settings)
    dispatcher = Dispatcher(engine=engine, catalog=catalog, channels=channels, settings=settings)
    single_report, single_s = timed_tick(lambda: dispatcher.dispatch_due(now=NOW), args.leads)
    reset(engine)
    report, real_s = timed_tick(
        lambda: dispatch_in_processes(settings, now=NOW, processes=args.processes, channels=null_channels),
        args.leads,
    )
    floor_line = (
        [f"the protocol's writes alone (raw SQL, 4 commits a batch, same run): {floor:,.0f} steps/s"]
        if floor
        else []
    )
    phases = single_report.per_step_us()
    value, base, single = args.leads / real_s, raw_n / raw_s, args.leads / single_s
    memory = max(peak_memory_mb(), peak_child_memory_mb())
    emit(
        args.json,
        {
            "name": "dispatch_sqlite" if not args.db else "dispatch",
            "value": round(value),
            "unit": "steps/s",
            "baseline": round(base),
            "baseline_name": "raw claim+advance loop",
            "ratio": round(value / base, 3),
            "target": TARGET,
            "leads": args.leads,
            "processes": args.processes,
            "one_process": round(single),
            "one_process_ratio": round(single / base, 3),
            "protocol_writes_alone": round(floor) if floor else None,
            "peak_memory_mb": round(memory),
            "one_process_us_per_step": {k: round(v, 1) for k, v in phases.items()},
            "sent": dict(report.sent),
        },
        [
            f"dispatch, {args.processes} processes: {args.leads:,} due steps in {real_s:.1f} s = "
            f"{value:,.0f} steps/s (target {TARGET:,})",
            f"dispatch, one process (same run): {args.leads:,} in {single_s:.1f} s = {single:,.0f} steps/s",
            f"baseline raw claim+advance (same run): {raw_n:,} rows in {raw_s:.1f} s = {base:,.0f} rows/s",
            *floor_line,
            f"ratio dispatch/baseline: {value / base:.2f} ({args.processes} processes), "
            f"{single / base:.2f} (one); peak memory per process {memory:.0f} MB",
            "one process, µs per step: " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()),
            f"report: {report.summary()}",
        ],
    )


if __name__ == "__main__":
    main()
