"""Bulk enrollment throughput: ``python -m benchmarks.enroll [--leads N] [--json]``.

Enrolls N leads into a golden-spiral sequence through ``spirale.enrollment.enroll_leads`` (first
due time computed per lead in its zone and window, idempotent insert), beside the same run's
baseline: a raw Core insert of the same number of enrollment rows with a constant due time."""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import emit, fresh_sqlite, insert_leads, timed
from models.tables import Enrollment
from sequences.catalog import SequenceCatalog
from spirale.enrollment import enroll_leads

SEQUENCES = Path(__file__).parent / "sequences"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Paris
TARGET = 20_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    catalog = SequenceCatalog.open(SEQUENCES)
    sequence = catalog.get("bench-email")
    _, engine = fresh_sqlite("enroll")
    lead_ids = insert_leads(engine, args.leads, NOW)

    def baseline() -> int:
        table = Enrollment.__table__  # type: ignore[attr-defined]
        rows = [
            {
                "id": uuid.uuid4(),
                "lead_id": lead_id,
                "sequence_name": "raw",
                "sequence_version": "0",
                "step_index": 0,
                "cycle": 0,
                "state": "active",
                "next_due_at": NOW,
                "enrolled_at": NOW,
                "updated_at": NOW,
            }
            for lead_id in lead_ids
        ]
        with engine.begin() as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(table.insert(), rows[start : start + 5000])
        return len(rows)

    def real() -> int:
        with engine.begin() as conn:
            result = enroll_leads(
                conn, lead_ids=lead_ids, sequence=sequence, version=catalog.version("bench-email"), now=NOW
            )
        return result.enrolled

    raw_n, raw_s = timed(baseline)
    real_n, real_s = timed(real)
    assert real_n == args.leads, f"enrolled {real_n} of {args.leads}"
    again_n, again_s = timed(real)  # idempotent re-run: nothing new
    value, base = real_n / real_s, raw_n / raw_s
    emit(
        args.json,
        {
            "name": "bulk_enrollment",
            "value": round(value),
            "unit": "leads/s",
            "baseline": round(base),
            "baseline_name": "raw Core insert of enrollment rows",
            "ratio": round(value / base, 3),
            "target": TARGET,
            "leads": args.leads,
            "rerun_enrolled": again_n,
            "rerun_seconds": round(again_s, 2),
        },
        [
            f"bulk enrollment: {args.leads} leads in {real_s:.2f} s = {value:,.0f} leads/s"
            f" (target {TARGET:,})",
            f"baseline (raw insert, same run): {base:,.0f} rows/s; ratio {value / base:.2f}",
            f"idempotent re-run: {again_n} new enrollments in {again_s:.2f} s",
        ],
    )


if __name__ == "__main__":
    main()
