"""Bulk enrollment throughput: ``python -m benchmarks.enroll [--leads N] [--json]``.

Enrolls N leads into a golden-spiral sequence through ``spirale.enrollment.enroll_leads`` (first
due time computed per lead in its zone and window, idempotent insert), beside the same run's
baseline: the driver's own insert of the same number of enrollment rows, built before the clock
starts (time-ordered ids, a constant due time): the database's limit for these writes."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import emit, fresh_sqlite, insert_leads, timed
from models.bulk import insert_sqlite_values, sqlite_instant
from models.ids import ordered_hex
from sequences.catalog import SequenceCatalog
from spirale.enrollment import COLUMNS, ENROLLMENTS, enroll_leads

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

    # Built before the clock starts: the baseline measures the database's insert alone.
    stamp = sqlite_instant(NOW)
    raw_rows = [
        (ordered_hex(), lead_id.hex, "raw", "0", 0, 0, "active", stamp, stamp, stamp) for lead_id in lead_ids
    ]

    def baseline() -> int:
        with engine.begin() as conn:
            for start in range(0, len(raw_rows), 5000):
                insert_sqlite_values(conn, ENROLLMENTS, COLUMNS, raw_rows[start : start + 5000])
        return len(raw_rows)

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
            "baseline_name": "raw driver insert of ready-made enrollment rows",
            "ratio": round(value / base, 3),
            "target": TARGET,
            "leads": args.leads,
            "rerun_enrolled": again_n,
            "rerun_seconds": round(again_s, 2),
        },
        [
            f"bulk enrollment: {args.leads} leads in {real_s:.2f} s = {value:,.0f} leads/s"
            f" (target {TARGET:,})",
            f"baseline (raw driver insert, same run): {base:,.0f} rows/s; ratio {value / base:.2f}",
            f"idempotent re-run: {again_n} new enrollments in {again_s:.2f} s",
        ],
    )


if __name__ == "__main__":
    main()
