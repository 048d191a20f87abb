"""The long reliability soak: ``python -m scripts.reliability_soak --kills 500 [--db URL]``.

Runs, each on a fresh database (a SQLite file, or a throw-away schema on the PostgreSQL server
named by ``--db``):

1. the crash campaign: a dispatcher process restarted over and over and killed with SIGKILL at
   every point of a send (before the claim, after the claim commit, after the decisions, after
   ``sending``, after the provider accepted, before the result commit), at random statements and
   from outside at random instants; then drained and audited against the fake provider's record;
2. a provider outage (``--outage-minutes``, simulated with the clock) behind the circuit breakers;
3. random provider faults on a quarter of the requests (429, 500/503 before and after processing,
   connection resets before and after processing, answers slower than the client waits).

Prints sends attempted, duplicates, losses and the time to drain after recovery for each; exits 1
if any duplicate, loss or inconsistency was found.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from models.db import dispose_engine, make_engine, normalize_url, upgrade
from tests.fakes.providers import running_fake_providers
from tests.reliability.crash_campaign import CrashCampaign
from tests.reliability.dispatcher_process import running_dispatcher_server
from tests.reliability.fault_drill import mixed_faults_drill, outage_drill
from tests.reliability.ledger import Audit, seed_relay

LEADS_PER_KILL = 60 / 56  # the workload the test suite gives its 56 kills, scaled


@contextmanager
def scratch_database(server: str | None) -> Iterator[str]:
    """A fresh migrated database for one phase, removed afterwards: a new file beside the SQLite
    file named by ``server`` (or in a temporary folder), or a new schema on a PostgreSQL server."""
    if server is None or normalize_url(server).get_backend_name() != "postgresql":
        given = normalize_url(server).database if server else None
        folder = Path(given).parent if given else Path(tempfile.mkdtemp(prefix="spirale-soak-"))
        path = folder / f"soak-{uuid.uuid4().hex[:10]}.db"
        url = f"sqlite:///{path}"
        try:
            upgrade(url)
            yield url
        finally:
            dispose_engine(url)
            for leftover in folder.glob(f"{path.name}*"):
                leftover.unlink()
            if not given:
                shutil.rmtree(folder)
        return
    schema = f"soak_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_url(server), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    in_schema = normalize_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
    scoped = in_schema.render_as_string(hide_password=False)
    try:
        upgrade(scoped)
        yield scoped
    finally:
        dispose_engine(scoped)
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def crash_phase(db: str | None, kills: int, seed: int) -> tuple[list[str], Audit]:
    leads = max(60, round(kills * LEADS_PER_KILL))
    with scratch_database(db) as url, running_fake_providers() as fake, running_dispatcher_server() as server:
        engine = make_engine(url)
        seed_relay(engine, leads)
        fake.latency = 0.003
        figures = CrashCampaign(engine, url, fake, server, kills=kills, seed=seed).run()
    return figures.lines(), figures.audit


def outage_phase(db: str | None, minutes: float, leads: int) -> tuple[list[str], Audit]:
    with scratch_database(db) as url, running_fake_providers() as fake:
        engine = make_engine(url)
        seed_relay(engine, leads)
        result = outage_drill(engine, fake, outage=timedelta(minutes=minutes))
    return result.lines(f"{minutes:g}-minute provider outage"), result.audit


def faults_phase(db: str | None, leads: int, seed: int) -> tuple[list[str], Audit]:
    with scratch_database(db) as url, running_fake_providers() as fake:
        engine = make_engine(url)
        seed_relay(engine, leads)
        result = mixed_faults_drill(engine, fake, seed=seed)
    return result.lines("random provider faults on 25% of requests"), result.audit


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--kills", type=int, default=500, help="SIGKILLs in the crash campaign")
    parser.add_argument("--db", help="sqlite:///FILE or a PostgreSQL URL (default: a temporary SQLite file)")
    parser.add_argument("--outage-minutes", type=float, default=10.0)
    parser.add_argument("--leads", type=int, default=100, help="leads in the provider-fault phases")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)

    phases = [
        crash_phase(args.db, args.kills, args.seed),
        outage_phase(args.db, args.outage_minutes, args.leads),
        faults_phase(args.db, args.leads, args.seed),
    ]
    dirty = [audit for _, audit in phases if not audit.clean]
    lines = [line for phase_lines, _ in phases for line in phase_lines]
    lines.append("RESULT: " + ("FAILED" if dirty else "every due step received exactly once"))
    for audit in dirty:
        lines += [f"  problem: {problem}" for problem in audit.problems[:20]]
    sys.stdout.write("\n".join(lines) + "\n")
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
