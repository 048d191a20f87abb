"""Form intake over HTTP on loopback: ``python -m benchmarks.intake [--n N] [--json]``.

Starts the real API under uvicorn on 127.0.0.1 in a subprocess (its own core, as in production),
then POSTs N distinct form submissions from a bounded pool of concurrent connections (httpx) and
checks that every one is in the database (none lost). The same run's ``GET /health`` rate over the
same pool is the baseline: the HTTP stack's own ceiling on this machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import func, select

from benchmarks.common import BENCH_DIR, emit, fresh_sqlite
from models.tables import FormSubmission

TARGET = 500.0
SUBMISSIONS = FormSubmission.__table__  # type: ignore[attr-defined]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(url: str, port: int) -> None:
    """The server process: the API for ``url`` under uvicorn (no access log, as in production)."""
    import uvicorn

    from spirale.api.app import create_app
    from spirale.settings import Settings

    folder = BENCH_DIR / "intake"
    settings = Settings(database_url=url, outbox_dir=folder / "outbox", email_channel="local-outbox")
    app = create_app(settings, process_webhook_events=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _start_server(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "benchmarks.intake", "--serve", url, "--port", str(port)]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API process exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the API did not answer /health within 60 s")


class _Pool:
    """``size`` threads, each with its own keep-alive ``httpx.Client``: a bounded connection pool."""

    def __init__(self, base: str, size: int) -> None:
        self.base = base
        self.size = size
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        found: httpx.Client | None = getattr(self._local, "client", None)
        if found is None:
            found = httpx.Client(base_url=self.base, timeout=30)
            self._local.client = found
            with self._lock:
                self._clients.append(found)
        return found

    def run(self, count: int, call: Callable[[httpx.Client, int], None]) -> tuple[float, list[float]]:
        """``count`` calls spread over the pool; returns (seconds, latencies)."""

        def timed_call(index: int) -> float:
            start = time.perf_counter()
            call(self.client(), index)
            return time.perf_counter() - start

        with ThreadPoolExecutor(self.size, thread_name_prefix="client") as executor:
            start = time.perf_counter()
            latencies = list(executor.map(timed_call, range(count)))
            return time.perf_counter() - start, latencies

    def close(self) -> None:
        for client in self._clients:
            client.close()


def _health(client: httpx.Client, _: int) -> None:
    response = client.get("/health")
    if response.status_code != 200:
        raise RuntimeError(f"/health answered {response.status_code}")


def _submitter(run: str, lead_ids: dict[int, str]) -> Callable[[httpx.Client, int], None]:
    def submit(client: httpx.Client, index: int) -> None:
        body = {
            "email": f"contact{index}@entreprise{index % 997}.fr",
            "first_name": "Camille",
            "company": f"Entreprise {index % 997}",
            "consent_email": True,
            "submission_id": f"{run}-{index}",
        }
        response = client.post("/forms/livre-blanc", json=body)
        if response.status_code != 202:
            raise RuntimeError(f"submission {index} answered {response.status_code}: {response.text[:200]}")
        lead_ids[index] = response.json()["lead_id"]

    return submit


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(latencies: list[float], quantile: float) -> float:
    ordered = sorted(latencies)
    return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="form submissions to post")
    parser.add_argument("--concurrency", type=int, default=8, help="connections in the client pool")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port)
        return

    url, engine = fresh_sqlite("intake")
    port = _free_port()
    server = _start_server(url, port)
    pool = _Pool(f"http://127.0.0.1:{port}", args.concurrency)
    lead_ids: dict[int, str] = {}
    try:
        pool.run(300, _health)  # warm-up: connections open, code paths loaded
        cpu_0 = _cpu_seconds(server.pid)
        health_s, _ = pool.run(args.n, _health)
        cpu_1 = _cpu_seconds(server.pid)
        intake_s, intake_lat = pool.run(args.n, _submitter("bench", lead_ids))
        cpu_2 = _cpu_seconds(server.pid)
    finally:
        pool.close()
        server.terminate()
        server.wait(timeout=30)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(SUBMISSIONS)).scalar_one()
        distinct_leads = conn.execute(select(func.count(func.distinct(SUBMISSIONS.c.lead_id)))).scalar_one()
    lost = args.n - stored
    if lost or len(lead_ids) != args.n or distinct_leads != args.n:
        raise SystemExit(f"LOST SUBMISSIONS: posted {args.n}, answered {len(lead_ids)}, stored {stored}")
    value, base_rate = args.n / intake_s, args.n / health_s
    server_ms = {"health": 1000 * (cpu_1 - cpu_0) / args.n, "intake": 1000 * (cpu_2 - cpu_1) / args.n}
    emit(
        args.json,
        {
            "name": "form_intake_http",
            "value": round(value),
            "unit": "submissions/s",
            "baseline": round(base_rate),
            "baseline_name": "GET /health over the same pool, same run",
            "ratio": round(value / base_rate, 3),
            "target": TARGET,
            "submissions": args.n,
            "stored": stored,
            "lost": lost,
            "concurrency": args.concurrency,
            "p50_ms": round(_ms(intake_lat, 0.5), 2),
            "p99_ms": round(_ms(intake_lat, 0.99), 2),
            "server_cpu_ms_per_submission": round(server_ms["intake"], 3),
            "server_cpu_ms_per_health": round(server_ms["health"], 3),
            "load_average": round(os.getloadavg()[0], 2),
        },
        [
            f"form intake over HTTP: {args.n} submissions in {intake_s:.2f} s = {value:,.0f}/s"
            f" (target {TARGET:,.0f}); stored {stored}, lost {lost}",
            f"latency p50 {_ms(intake_lat, 0.5):.1f} ms, p99 {_ms(intake_lat, 0.99):.1f} ms"
            f" ({args.concurrency} connections)",
            f"baseline GET /health (same run, same pool): {base_rate:,.0f}/s; ratio {value / base_rate:.2f}",
            f"server CPU per request: {server_ms['intake']:.2f} ms per submission,"
            f" {server_ms['health']:.2f} ms per /health (load average {os.getloadavg()[0]:.1f} on"
            f" {os.cpu_count()} cores)",
        ],
    )


if __name__ == "__main__":
    main()
