"""Two dispatch shards on a real Prefect process work pool: two deployments (shard 0 of 2, shard 1
of 2) and two ``prefect worker start`` processes. Each run claims only its shard's enrollments,
both do a share, and every due step reaches the outbox exactly once."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.client.orchestration import get_client
from prefect.flows import load_flow_from_entrypoint
from pydantic import ValidationError
from sqlalchemy import Engine, select

from flows.params import DispatchParams, shard_suffix
from models.claims import ENROLLMENTS, Shard, shard_of
from models.tables import OutboxMessage
from sequences.catalog import SequenceCatalog
from spirale.enrollment import enroll_leads
from spirale.settings import PROJECT_ROOT, Settings
from tests.flows.conftest import FIXTURE_LIBRARY, MakeLeads
from tests.flows.prefect_api import artifacts
from tests.flows.work_pool import (
    deploy_from_source,
    process_pool,
    process_workers,
    start_run,
    submitted_by,
    wait_until_final,
)

OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
MONDAY_9H = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 09:00 in Paris
SHARDS = 2
LEAD_COUNT = 200


def test_dispatch_params_take_a_shard_only_with_shards() -> None:
    assert DispatchParams().claim_shard() is None
    assert DispatchParams(shard=0, shards=1).claim_shard() is None
    assert DispatchParams(shard=1, shards=2).claim_shard() == Shard(1, 2)
    with pytest.raises(ValidationError, match=r"shards=2 needs a shard index between 0 and 1"):
        DispatchParams(shards=2)
    with pytest.raises(ValidationError, match=r"shard=2 is out of range: with shards=2 the index must be"):
        DispatchParams(shard=2, shards=2)
    with pytest.raises(ValidationError, match=r"shard=1 is out of range: with shards=1"):
        DispatchParams(shard=1)
    with pytest.raises(ValidationError, match=r"less than or equal to 256"):
        DispatchParams(shard=0, shards=257)
    assert shard_suffix({"shard": 1, "shards": 2}) == "shard-1of2"
    assert shard_suffix({"shards": 1}) is None and shard_suffix({}) is None


def test_the_commented_shard_deployments_of_prefect_yaml_are_valid() -> None:
    text = (PROJECT_ROOT / "prefect.yaml").read_text(encoding="utf-8")
    start, end = text.index("  # - name: tick-shard-0"), text.index("  - name: forms")
    block = "\n".join(re.sub(r"^  # ?", "  ", line) for line in text[start:end].splitlines())
    data = yaml.safe_load(text[:start] + block + "\n" + text[end:])
    PrefectYamlModel.model_validate(data)
    shards = [d for d in data["deployments"] if d["name"].startswith("tick-shard-")]
    assert [d["name"] for d in shards] == ["tick-shard-0", "tick-shard-1"]
    tick = next(d for d in data["deployments"] if d["name"] == "tick")
    for k, spec in enumerate(shards):
        flow = load_flow_from_entrypoint(spec["entrypoint"])
        params = flow.validate_parameters(spec["parameters"])["params"]
        assert params.claim_shard() == Shard(k, SHARDS)
        assert spec["concurrency_limit"]["limit"] == 1
        assert (spec["schedules"], spec["work_pool"]) == (tick["schedules"], tick["work_pool"])


def emails_by_worker(outbox_dir: Path) -> dict[int, list[str]]:
    """The outbox ids of the ``.eml`` files each worker's flow run wrote."""
    return {
        k: sorted(p.stem for p in (outbox_dir / f"worker-{k}" / "email").glob("*.eml")) for k in range(SHARDS)
    }


@pytest.mark.db
def test_two_process_workers_dispatch_their_own_shards_exactly_once(
    spirale_env: Callable[..., Settings],
    engine: Engine,
    make_leads: MakeLeads,
    outbox_dir: Path,
    tmp_path: Path,
) -> None:
    spirale_env(SPIRALE_DISPATCH_BATCH_SIZE="25")
    catalog = SequenceCatalog.open(FIXTURE_LIBRARY)
    leads = make_leads(LEAD_COUNT, now=MONDAY_9H)
    with engine.begin() as conn:
        enroll_leads(
            conn, lead_ids=leads, sequence=catalog.get("drip"), version=catalog.version("drip"), now=MONDAY_9H
        )
        enrollment_of = {
            lead: enrollment
            for enrollment, lead in conn.execute(select(ENROLLMENTS.c.id, ENROLLMENTS.c.lead_id))
        }
    expected = Counter(shard_of(lead, SHARDS) for lead in enrollment_of)
    assert len(enrollment_of) == LEAD_COUNT

    pool = f"shards-{uuid.uuid4().hex[:8]}"
    queues = [f"shard-{k}" for k in range(SHARDS)]
    with process_pool(pool, queues):
        # A module-path entrypoint: a file path (flows/dispatch.py) is loaded with flows/ first on
        # sys.path, where flows/scoring.py hides the scoring package from the engine's imports.
        for k in range(SHARDS):
            params = {"now": MONDAY_9H.isoformat(), "shard": k, "shards": SHARDS, "steps_per_task": 60}
            deploy_from_source(
                PROJECT_ROOT,
                "flows.dispatch.dispatch",
                name=f"{pool}-shard-{k}",
                pool=pool,
                queue=queues[k],
                parameters={"params": params},
            )
        # Each worker writes to its own local outbox: the files tell which run sent what.
        envs = [{"SPIRALE_OUTBOX_DIR": str(outbox_dir / f"worker-{k}")} for k in range(SHARDS)]
        with process_workers(pool, queues, envs=envs, log_dir=tmp_path) as workers:
            started = [start_run(f"dispatch/{pool}-shard-{k}") for k in range(SHARDS)]
            runs = wait_until_final([run.id for run in started], workers, timeout=120)
            takers = [submitted_by(run.id, [w.name for w in workers]) for run in runs]
            with get_client(sync_client=True) as client:
                registered = {w.name for w in client.read_workers_for_work_pool(pool)}
        worker_pids = {w.process.pid for w in workers}

    # Both runs completed, each on its queue, taken by the worker serving that queue, in a process
    # of its own.
    for k, run in enumerate(runs):
        assert run.state is not None and run.state.is_completed(), (run.name, run.state)
        assert run.name == f"dispatch-2026-12-07T08:00-shard-{k}of{SHARDS}"
        assert (run.work_pool_name, run.work_queue_name) == (pool, queues[k])
        assert takers[k] == {workers[k].name}
    assert registered >= {w.name for w in workers}
    pids = {run.infrastructure_pid for run in runs}
    assert None not in pids and len(pids) == SHARDS
    assert not {int(str(pid)) for pid in pids} & (worker_pids | {os.getpid()})

    # Each run claimed exactly its shard's due steps, and each shard had some.
    for k, run in enumerate(runs):
        [summary] = artifacts(run.id, f"dispatch-summary-shard-{k}of{SHARDS}")
        rows = json.loads(str(summary.data))
        assert {"outcome": "claimed", "key": "", "count": expected[k]} in rows
        assert {"outcome": "sent", "key": "email", "count": expected[k]} in rows
        assert f"(shard {k} of {SHARDS})" in str(summary.description)
        # Sized by the count of the shard's due steps alone (about 100 steps: tasks of up to 60).
        [progress] = artifacts(run.id, f"dispatch-progress-shard-{k}of{SHARDS}")
        assert f"{expected[k]:,} of about {expected[k]:,} due steps" in str(progress.description)
    assert all(expected[k] > 0 for k in range(SHARDS))

    # Every lead got exactly one outbox row for the step, and exactly one message on disk, written by
    # the worker of its enrollment's shard.
    with engine.connect() as conn:
        outbox = list(
            conn.execute(
                select(
                    OUTBOX.c.id, OUTBOX.c.lead_id, OUTBOX.c.enrollment_id, OUTBOX.c.step_id, OUTBOX.c.state
                )
            )
        )
        steps = set(conn.execute(select(ENROLLMENTS.c.step_index)).scalars())
    assert Counter(row.lead_id for row in outbox) == Counter(leads)
    assert {(row.step_id, row.state) for row in outbox} == {("hello", "sent")}
    assert steps == {1}
    lead_by_outbox = {str(row.id): row.lead_id for row in outbox}
    files = emails_by_worker(outbox_dir)
    assert Counter(files[0] + files[1]) == Counter(lead_by_outbox.keys())
    for k in range(SHARDS):
        assert {shard_of(lead_by_outbox[name], SHARDS) for name in files[k]} == {k}
        assert len(files[k]) == expected[k]
