"""Rescoring with decay: ``python -m benchmarks.scoring [--leads N] [--json]``.

N leads, each with a fit and an engagement last brought up to date within the day, are rescored by
the real ``scoring.rescoring.rescore_all``: every lead read in batches with its engagement decayed
to now (in SQL), its status recomputed from fit x engagement, and the leads that cross a threshold
moved, written with their ledger rows and routed (exits and enrollments). The same run's baseline
is the raw Core loop a naive implementation would be: read the same batches and write one decayed
value back for every lead, with no rules at all (the machine's limit for read + update). Both run
on a fresh SQLite database.
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, select, update

from benchmarks.common import LEADS, emit, fresh_sqlite, lead_rows, timed
from scoring.rescoring import rescore_all
from scoring.rules import ScoringRules, load_rules, scoring_path
from scoring.status import status_of
from scoring.team import load_team, team_path
from sequences.catalog import SequenceCatalog
from spirale.settings import PROJECT_ROOT

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # a nightly run
TARGET = 100_000
BATCH = 10_000


def insert_scored_leads(engine: Engine, count: int, rules: ScoringRules, seed: int = 7) -> None:
    """Leads with a fit, an engagement last brought up to date within the last day (by the
    previous night's run or an event since) and the status it gave then: tonight's decay moves
    the few that crossed a threshold since (a few percent, as on a real night)."""
    rng = random.Random(seed)
    for start in range(0, count, 20_000):
        rows = lead_rows(start, min(20_000, count - start), NOW)
        for row in rows:
            fit, engagement = rng.choice((10.0, 20.0, 40.0, 60.0)), rng.uniform(0, 60)
            status = status_of(fit, engagement, rules).value
            row.update(
                status=status,
                owner=None,
                fit_score=fit,
                engagement_score=engagement,
                engagement_at=NOW - timedelta(days=rng.uniform(0, 1)),
            )
        with engine.begin() as conn:
            conn.execute(LEADS.insert(), rows)


def raw_loop(engine: Engine) -> int:
    """Read (id, score, at) in batches and write back a decayed score: no rules, no routing."""
    statement = (
        update(LEADS).where(LEADS.c.id == bindparam("b_id")).values(engagement_score=bindparam("b_score"))
    )
    done, last = 0, None
    while True:
        with engine.begin() as conn:
            query = select(LEADS.c.id, LEADS.c.engagement_score, LEADS.c.engagement_at).order_by(LEADS.c.id)
            if last is not None:
                query = query.where(LEADS.c.id > last)
            rows = conn.execute(query.limit(BATCH)).all()
            if not rows:
                return done
            params: list[dict[str, Any]] = [
                {"b_id": r.id, "b_score": r.engagement_score * 0.999} for r in rows
            ]
            conn.execute(statement, params)
        done += len(rows)
        last = rows[-1].id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    sequences = PROJECT_ROOT / "sequences"
    rules = load_rules(scoring_path(sequences))
    team = load_team(team_path(sequences))
    catalog = SequenceCatalog.open(sequences)
    _, engine = fresh_sqlite("scoring")
    insert_scored_leads(engine, args.leads, rules)

    raw_n, raw_s = timed(lambda: raw_loop(engine))
    report_holder: list[Any] = []

    def real() -> int:
        report = rescore_all(engine, now=NOW, rules=rules, catalog=catalog, batch=BATCH, team=team)
        report_holder.append(report)
        return report.scanned

    real_n, real_s = timed(real)
    assert real_n == args.leads, f"rescored {real_n} of {args.leads}"
    report = report_holder[0]
    value, base = real_n / real_s, raw_n / raw_s
    moves = ", ".join(f"{r['from']}->{r['to']} {r['leads']}" for r in report.rows()) or "none"
    emit(
        args.json,
        {
            "name": "rescoring_with_decay",
            "value": round(value),
            "unit": "leads/s",
            "baseline": round(base),
            "baseline_name": "raw Core read + update loop",
            "ratio": round(value / base, 3),
            "target": TARGET,
            "leads": args.leads,
            "moves": sum(report.moves.values()),
        },
        [
            f"rescoring with decay: {value:,.0f} leads/s ({real_n:,} leads in {real_s:.2f} s)",
            f"target: {TARGET:,} leads/s",
            f"baseline raw read+update loop: {base:,.0f} leads/s; ratio {value / base:.2f}",
            f"moves: {moves}; enrollments: {dict(report.routing.enrolled)}",
        ],
    )


if __name__ == "__main__":
    main()
