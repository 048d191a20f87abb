"""A dispatcher in its own process, with REAL SendGrid/Twilio channels pointed at the fake providers,
that can kill itself with SIGKILL at a precise point of a send.

The crash seam is ours, built from the engine's public pieces: ``Dispatcher.claim`` (before and
after the claim commit), ``SendRecorder.send_and_record`` (the decisions and ``pending`` rows are
committed, nothing is sent), a channel wrapper (``sending`` is committed and the provider not yet
called; or the provider accepted a message and its result is not recorded), and the engine's
``commit`` event (the results are written, their commit not yet sent). ``random`` dies at a random
database statement or seam, anywhere in the run.

Two ways to run it:

- one shot: ``python -m tests.reliability.dispatcher_process --db URL --provider-url URL --now ISO
  [--crash-at POINT]``; prints the run's report as JSON (unless it died);
- ``--serve``: imports everything once, then forks one fresh dispatcher process per job read from
  stdin (JSON lines), so a campaign of hundreds of kills does not pay the interpreter start-up each
  time. :class:`DispatcherServer` is the client side of that protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from channels.base import AnyChannel, ChannelKind, SendOutcome
from channels.retry import RetryPolicy
from channels.sendgrid import SendGridEmail
from channels.twilio import TwilioSms
from models.claims import ClaimedEnrollment
from models.db import make_engine
from sequences.catalog import SequenceCatalog
from sequences.rendering import sample_context
from spirale.dispatch import Dispatcher, DispatchReport
from spirale.dispatch.batch import PendingSend
from spirale.dispatch.sending import SendRecorder
from spirale.settings import Settings
from tests.fakes.providers import SENDGRID_API_KEY, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 5  # the smallest lease Settings allows: a campaign's clock moves past it each restart

BEFORE_CLAIM = "before-claim"
AFTER_CLAIM = "after-claim"
AFTER_PENDING = "after-pending"
AFTER_SENDING = "after-sending"
AFTER_ACCEPTED = "after-accepted"
BEFORE_RECORD_COMMIT = "before-record-commit"
RANDOM = "random"
CRASH_POINTS = (BEFORE_CLAIM, AFTER_CLAIM, AFTER_PENDING, AFTER_SENDING, AFTER_ACCEPTED, BEFORE_RECORD_COMMIT)


class Crasher:
    """Kills this process with SIGKILL the ``countdown``-th time ``point`` is reached (``random``:
    at the ``countdown``-th seam or database statement of the run)."""

    def __init__(self, point: str | None = None, countdown: int = 1) -> None:
        if point is not None and point not in (*CRASH_POINTS, RANDOM):
            raise ValueError(f"unknown crash point {point!r}")
        self.point = point
        self.countdown = countdown
        self.provider_called = False

    def at(self, point: str) -> None:
        """A seam of the send path: die here if this is the chosen point."""
        if self.point == point or self.point == RANDOM:
            self.countdown -= 1
            if self.countdown <= 0:
                os.kill(os.getpid(), signal.SIGKILL)

    def watch(self, engine: Engine) -> None:
        """Listen to the engine: the result commit, and every statement for ``random``."""
        event.listen(engine, "commit", self._on_commit)
        if self.point == RANDOM:
            event.listen(engine, "after_cursor_execute", self._on_statement)

    def _on_commit(self, _conn: Any) -> None:
        # The first commit after a provider call is the one that records the results.
        if self.provider_called:
            self.provider_called = False
            self.at(BEFORE_RECORD_COMMIT)

    def _on_statement(self, *_args: Any) -> None:
        self.at(RANDOM)


class CrashingChannel:
    """A real channel, called one message at a time so the process can die between two of them."""

    def __init__(self, inner: AnyChannel, crasher: Crasher) -> None:
        self.inner = inner
        self.crasher = crasher

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def kind(self) -> ChannelKind:
        return self.inner.kind

    def send(self, message: Any) -> Any:
        return self.inner.send(message)

    def send_many(self, messages: Sequence[Any]) -> list[SendOutcome]:
        # The recorder calls channels right after committing ``sending``.
        self.crasher.at(AFTER_SENDING)
        outcomes: list[SendOutcome] = []
        for message in messages:
            outcome = self.inner.send_many([message])[0]
            outcomes.append(outcome)
            self.crasher.provider_called = True
            if outcome.ok:
                self.crasher.at(AFTER_ACCEPTED)
        return outcomes


@dataclass
class CrashingRecorder(SendRecorder):
    """The engine's recorder, with a seam once the ``pending`` rows are committed."""

    crasher: Crasher = field(default_factory=Crasher)

    def send_and_record(self, sends: Sequence[PendingSend], *, now: datetime, report: DispatchReport) -> None:
        if sends:
            self.crasher.at(AFTER_PENDING)
        super().send_and_record(sends, now=now, report=report)


@dataclass
class CrashingDispatcher(Dispatcher):
    """The engine's dispatcher, with seams around the claim and a crashing recorder."""

    crasher: Crasher = field(default_factory=Crasher)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.recorder = CrashingRecorder(
            engine=self.engine, channels=self.channels, settings=self.settings, crasher=self.crasher
        )
        self.recovery.recorder = self.recorder

    def claim(self, now: datetime) -> list[ClaimedEnrollment]:
        self.crasher.at(BEFORE_CLAIM)
        claimed = super().claim(now)
        if claimed:
            self.crasher.at(AFTER_CLAIM)
        return claimed


@dataclass
class Job:
    """One dispatcher run: where, when (the simulated clock), and where to die."""

    database_url: str
    provider_url: str
    now: str
    crash_at: str | None = None
    countdown: int = 1
    worker_id: str | None = None
    batch_size: int = 3
    max_attempts: int = 25
    timeout: float = 2.0
    start_at: float | None = None  # wall-clock instant to wait for, so N workers start together


def job_settings(job: Job) -> Settings:
    return Settings(
        database_url=job.database_url,
        sequences_dir=FIXTURES,
        public_url="https://spirale.example",
        secret_key="reliability-secret",
        dispatch_batch_size=job.batch_size,
        claim_lease_seconds=LEASE_SECONDS,
        frequency_cap_count=10,
        send_max_attempts=job.max_attempts,
    )


def provider_channels(provider_url: str, *, timeout: float) -> dict[str, AnyChannel]:
    """The real provider adapters, aimed at the fake server; no in-process waiting on retries."""
    retry = RetryPolicy(max_attempts=2, base=0.01, cap=0.05)
    email = SendGridEmail(SENDGRID_API_KEY, host=provider_url, concurrency=1, timeout=timeout, retry=retry)
    sms = TwilioSms(
        TWILIO_ACCOUNT_SID,
        TWILIO_AUTH_TOKEN,
        from_="+33700000001",
        base_url=provider_url,
        per_second=10_000,
        concurrency=1,
        timeout=timeout,
        retry=retry,
    )
    return {"email": email, "sms": sms}


def run_job(job: Job, catalog: SequenceCatalog) -> dict[str, Any]:
    """Run one dispatch tick at ``job.now``; returns the report's counters."""
    engine = make_engine(job.database_url)
    with engine.connect():
        pass  # connected before ``start_at``, so that N workers really start together
    crasher = Crasher(job.crash_at, job.countdown)
    crasher.watch(engine)
    channels = {
        kind: CrashingChannel(channel, crasher)
        for kind, channel in provider_channels(job.provider_url, timeout=job.timeout).items()
    }
    dispatcher = CrashingDispatcher(
        engine=engine, catalog=catalog, channels=channels, settings=job_settings(job), crasher=crasher
    )
    if job.worker_id:
        dispatcher.worker_id = job.worker_id
    if job.start_at is not None:
        time.sleep(max(job.start_at - time.time(), 0.0))
    started = time.time()
    report = dispatcher.dispatch_due(now=datetime.fromisoformat(job.now))
    return {
        "worker_id": dispatcher.worker_id,
        "claimed": report.claimed,
        "sent": report.total_sent,
        "unknown": sum(report.unknown.values()),
        "failed": sum(report.failed.values()),
        "recovered": report.recovered,
        "retried": report.retried,
        "started": started,
        "finished": time.time(),
    }


def open_catalog() -> SequenceCatalog:
    """The fixture catalog, parsed and its templates compiled once, before any fork."""
    catalog = SequenceCatalog.open(FIXTURES)
    for name in ("relay", "single", "nudge"):
        sequence = catalog.get(name)
        for step in sequence.steps:
            catalog.renderer.render_step(sequence, step, None, sample_context(sequence, step, None))
    return catalog


# -- the fork server -------------------------------------------------------------------------------
def _fork_job(job: Job, catalog: SequenceCatalog) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 0
        payload: dict[str, Any]
        try:
            payload = {"result": run_job(job, catalog)}
        except Exception:
            # Reported to the client (exit code 1 and the traceback), which fails the test with it.
            payload, code = {"error": traceback.format_exc()}, 1
        with os.fdopen(write_end, "w") as out:
            out.write(json.dumps(payload))
        os._exit(code)  # a forked child leaves at once: no atexit hooks, no pool disposal
    os.close(write_end)
    return pid, read_end


def _collect(pid: int, read_end: int) -> dict[str, Any]:
    with os.fdopen(read_end) as source:
        text = source.read()
    _, status = os.waitpid(pid, 0)
    outcome: dict[str, Any] = json.loads(text) if text else {}
    outcome["pid"] = pid
    outcome["signal"] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    outcome["exit_code"] = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    return outcome


def serve() -> None:
    """Fork one dispatcher per job; children stay unreaped until ``collect`` so a pid that the
    client kills can never belong to another process."""
    catalog = open_catalog()
    _say({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        children = [_fork_job(Job(**job), catalog) for job in request["jobs"]]
        _say({"pids": [pid for pid, _ in children]})
        if sys.stdin.readline().strip() != "collect":
            raise SystemExit("protocol error: expected 'collect'")
        _say({"results": [_collect(pid, fd) for pid, fd in children]})


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class RunResult:
    """How one dispatcher process ended."""

    pid: int
    killed: bool
    result: dict[str, Any] | None
    error: str | None


class DispatcherServer:
    """The client of ``--serve``: run jobs in fresh processes, optionally SIGKILL them from outside."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.dispatcher_process", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=PROJECT_ROOT,
        )
        self._read()

    def run(self, jobs: Sequence[Job], *, kill_after: float | None = None) -> list[RunResult]:
        """Run ``jobs`` in parallel processes; with ``kill_after``, SIGKILL them after that delay."""
        self._write(json.dumps({"jobs": [asdict(job) for job in jobs]}))
        pids: list[int] = self._read()["pids"]
        if kill_after is not None:
            time.sleep(kill_after)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)  # still our unreaped child: the pid cannot be reused
        self._write("collect")
        return [
            RunResult(r["pid"], r["signal"] == signal.SIGKILL, r.get("result"), r.get("error"))
            for r in self._read()["results"]
        ]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def _write(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the dispatcher server stopped (exit code {self.process.poll()})")
        message: dict[str, Any] = json.loads(line)
        return message


@contextmanager
def running_dispatcher_server() -> Iterator[DispatcherServer]:
    server = DispatcherServer()
    try:
        yield server
    finally:
        server.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="fork a dispatcher per job read from stdin")
    parser.add_argument("--db", help="database URL")
    parser.add_argument("--provider-url", help="base URL of the fake SendGrid/Twilio server")
    parser.add_argument("--now", help="the simulated instant of this tick (ISO-8601 with offset)")
    parser.add_argument("--crash-at", choices=(*CRASH_POINTS, RANDOM), help="SIGKILL this process there")
    parser.add_argument("--countdown", type=int, default=1, help="die the N-th time the point is reached")
    parser.add_argument("--worker-id")
    parser.add_argument("--batch", type=int, default=3)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return
    if not (args.db and args.provider_url and args.now):
        parser.error("--db, --provider-url and --now are required (or --serve)")
    job = Job(
        database_url=args.db,
        provider_url=args.provider_url,
        now=args.now,
        crash_at=args.crash_at,
        countdown=args.countdown,
        worker_id=args.worker_id,
        batch_size=args.batch,
    )
    print(json.dumps(run_job(job, open_catalog())))


if __name__ == "__main__":
    main()
