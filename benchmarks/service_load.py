"""The job service under load: 1,000 jobs, 50 clients polling, on SQLite and on PostgreSQL.

    python benchmarks/service_load.py [--jobs 1000] [--clients 50] [--client-processes 5] [--backend sqlite|postgresql|both]
        [--startup-seconds 0.5] [--simulated-seconds 0.2] [--concurrency 16] [--think-seconds 0.1] [--output DIR]

For each database it starts the servers (SQLite: one; PostgreSQL: two sharing one database, as
two nodes would), then ``--clients`` boto3 clients (in ``--client-processes`` processes, so the
client side's GIL does not set the latency) create the jobs through CreateModelCustomizationJob,
each its share back to back, and poll GetModelCustomizationJob and ListModelCustomizationJobs (pages of 10 to 100, following
``nextToken`` for up to 5 pages) until every job has ended. It prints, and writes to
``OUTPUT/<backend>.json`` with the CPU: per operation the calls, p50 / p95 / p99 / max latency
in ms and errors (any exception or non-2xx answer); the jobs completed; duplicate runs (a job
whose worker started more than once, counted by the executor and by each job's ``attempts`` in
the database); and the wall time. It exits 1 if there was an error, a duplicate run or a job
that did not complete.

Training is stubbed by ``service_load_server.NoopExecutor``: the real supervisor claims the jobs and watches
the handles, and each "worker" is a thread in the server that does to the job's row what
:mod:`tunesmith.jobs.worker` does (started, the three phases, a training loss, a registered
custom model, Completed); the clients are in ``service_load_clients.py``. Trade-offs:

- The threads share the server's GIL, which real worker processes do not; they hold it for a
  handful of small commits per job.
- ``--startup-seconds`` stands for a real worker's start-up (Python and torch: 1-3 s). The
  supervisor claims a job before it starts its worker; a worker that finds its job not
  claimed by its server (another server's claim won) is counted, and fails the run.
- ``--think-seconds`` is each client's mean pause between calls (jittered 0-2x); 0 is a closed
  loop that saturates the server, and the latency is then mostly queueing.
- Each client's first call (a one-item List) is not timed: it pays boto3's and the server's
  one-time costs.

PostgreSQL is Debian's (``tests/postgres_server.py`` starts a throwaway one; skipped, with the
reason, where it is not installed). Servers get its URL in ``TUNESMITH_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from tunesmith.jobs.settings import DATABASE_URL_VARIABLE
from tunesmith.jobs.store import CustomModel, Job, JobStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from service_load_clients import run_clients  # noqa: E402
from service_load_server import serve  # noqa: E402

from service_harness import free_port  # noqa: E402

SERVERS = {"sqlite": 1, "postgresql": 2}
RESULTS = Path(__file__).resolve().parent / "results" / "service_load"


@dataclass
class LoadOptions:
    jobs: int = 1000
    """Jobs created, spread evenly over the clients."""
    clients: int = 50
    """Concurrent boto3 clients (threads), each creating its jobs and then polling."""
    client_processes: int = 5
    """Processes the clients run in."""
    startup_seconds: float = 0.5
    """How long each job's no-op worker takes to start (a real one imports torch: 1-3 s)."""
    simulated_seconds: float = 0.2
    """How long it then "trains"."""
    concurrency: int = 16
    """Jobs each server runs at once (``tunesmith serve --concurrency``)."""
    think_seconds: float = 0.1
    """Each client's mean pause between calls; 0: a closed loop."""
    timeout: float = 900.0
    """Give up on jobs not ended after this many seconds of polling."""

    def __post_init__(self) -> None:
        if self.jobs < 1 or self.clients < 1 or self.client_processes < 1 or self.concurrency < 1:
            raise ValueError("jobs, clients, client processes and concurrency must be at least 1")
        self.client_processes = min(self.client_processes, self.clients)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank."""
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 1) if ordered else None


def cpu_label() -> dict:
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (info.read_text().splitlines() if info.exists() else []) if line.startswith("model name")]
    return {"cpu": names[0] if names else "unknown CPU", "cores": len(os.sched_getaffinity(0))}


class ServerProcess:
    """``service_load.py --serve`` in its own process group, its output in ``log``."""

    def __init__(self, folder: Path, url: str, node: str, options: LoadOptions):
        self.port, self.node, self.log = free_port(), node, folder / f"server-{node}.log"
        self.url, self.runs = f"http://127.0.0.1:{self.port}", folder / f"runs-{node}.txt"
        command = [sys.executable, str(Path(__file__).resolve()), "--serve", "--home", str(folder / "home"), "--allow", str(folder),
                   "--port", str(self.port), "--node-name", node, "--concurrency", str(options.concurrency),
                   "--startup-seconds", str(options.startup_seconds), "--simulated-seconds", str(options.simulated_seconds),
                   "--runs", str(self.runs)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env={**os.environ, DATABASE_URL_VARIABLE: url}, stdout=log, stderr=log,
                                            start_new_session=True)

    def wait_ready(self, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server {self.node} did not start; its log ends:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)  # uvicorn shuts down; the supervisor stops with it
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def database_facts(url: str, runs: list[Path]) -> dict:
    """What the database and the executors' records say: statuses, attempts, models, duplicate runs."""
    from sqlalchemy import func, select

    store = JobStore(url, migrate=False)
    try:
        with store.session() as session:
            jobs = session.scalars(select(Job)).all()
            models = session.scalar(select(func.count()).select_from(CustomModel))
    finally:
        store.engine.dispose()
    events = Counter()
    for path in runs:
        for line in path.read_text().splitlines() if path.exists() else []:
            event, job_id = line.split()
            events[event, job_id] += 1
    started = Counter()
    for (event, job_id), n in events.items():
        if event.startswith("started"):
            started[job_id] += n
    ended = [j.ended for j in jobs if j.ended is not None]
    return {
        "statuses": dict(Counter(j.status for j in jobs)),
        "jobs_per_node": dict(Counter((j.details or {}).get("node", "none") for j in jobs)),
        "custom_models": models,
        "attempts_not_one": sorted(j.name for j in jobs if j.attempts != 1),
        "duplicate_runs": sorted(job_id for job_id, n in started.items() if n > 1),
        "launches": sum(n for (event, _), n in events.items() if event == "launched"),
        "cancelled_before_start": sum(n for (event, _), n in events.items() if event == "lost"),
        "started_unclaimed": sum(n for (event, _), n in events.items() if event == "started-unclaimed"),
        "created_to_ended_seconds": round((max(ended) - min(j.created for j in jobs)).total_seconds(), 2) if ended else None,
    }


def run_backend(backend: str, options: LoadOptions, output: Path | None = RESULTS) -> dict:
    """One database's run, end to end; the report (also written to ``output/<backend>.json``)."""
    with tempfile.TemporaryDirectory(prefix=f"service-load-{backend}-") as folder:
        folder = Path(folder)
        (folder / "home").mkdir()
        if backend == "sqlite":
            return summarize(backend, options, *measure(f"sqlite:///{folder / 'tunesmith.db'}", SERVERS[backend], folder, options), output)
        from postgres_server import PostgresServer

        postgres = PostgresServer().start()
        try:
            return summarize(backend, options, *measure(postgres.new_database(), SERVERS[backend], folder, options), output)
        finally:
            postgres.stop()


def measure(url: str, servers: int, folder: Path, options: LoadOptions) -> tuple[dict, float, dict]:
    """Start the servers, run the clients, stop the servers: the clients' report, the wall seconds
    and what the database, the executors' records and the servers' logs say."""
    JobStore(url).engine.dispose()  # migrated once here, not by the servers at once
    started: list[ServerProcess] = []
    try:
        started = [ServerProcess(folder, url, f"node-{chr(97 + i)}", options) for i in range(servers)]
        for server in started:
            server.wait_ready()
        clients, wall = run_clients([s.url for s in started], folder, options)
    finally:
        for server in started:
            server.stop()
    facts = database_facts(url, [s.runs for s in started])
    facts["servers"] = len(started)
    facts["server_log_errors"] = [line for s in started for line in s.log.read_text().splitlines() if "Traceback" in line or "ERROR" in line][:20]
    return clients, wall, facts


def summarize(backend: str, options: LoadOptions, clients: dict, wall: float, facts: dict, output: Path | None) -> dict:
    statuses = clients["statuses"]
    completed = sum(1 for s in statuses.values() if s == "Completed")
    answer = {
        "backend": backend, **cpu_label(), "options": asdict(options),
        "operations": {op: {"calls": len(v), "p50_ms": percentile(v, 50), "p95_ms": percentile(v, 95), "p99_ms": percentile(v, 99),
                            "max_ms": round(max(v), 1) if v else None, "errors": clients["errors"].get(op, 0)}
                       for op, v in clients["timings"].items()},
        "list_pages_followed": clients["pages"],
        "errors": sum(clients["errors"].values()), "error_examples": clients["examples"],
        "jobs_completed": completed,
        "jobs_not_completed": options.jobs - completed,
        "not_completed_examples": sorted(f"{n}: {s}" for n, s in statuses.items() if s != "Completed")[:20],
        "wall_seconds": round(wall, 2),
        **facts,
    }
    answer["ok"] = (answer["errors"] == 0 and not answer["duplicate_runs"] and not answer["attempts_not_one"] and completed == options.jobs
                    and answer["custom_models"] == options.jobs and not answer["server_log_errors"] and not answer["started_unclaimed"])
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        (output / f"{backend}.json").write_text(json.dumps(answer, indent=2) + "\n")
    return answer


def print_report(report: dict) -> None:
    options = report["options"]
    print(f"\n{report['backend']}: {report['servers']} server(s), {options['jobs']} jobs, {options['clients']} clients in "
          f"{options['client_processes']} processes, think {options['think_seconds']} s; no-op workers start in "
          f"{options['startup_seconds']} s and train {options['simulated_seconds']} s, concurrency {options['concurrency']} per server; "
          f"{report['cpu']}, {report['cores']} cores")
    print(f"{'operation':<10}{'calls':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    for name, row in report["operations"].items():
        print(f"{name:<10}{row['calls']:>8}{row['p50_ms']!s:>9}{row['p95_ms']!s:>9}{row['p99_ms']!s:>9}{row['max_ms']!s:>9}{row['errors']:>8}")
    calls = sum(row["calls"] for row in report["operations"].values())
    print(f"jobs completed {report['jobs_completed']}/{options['jobs']} (custom models {report['custom_models']}, per node "
          f"{report['jobs_per_node']}); duplicate runs {len(report['duplicate_runs'])}; attempts != 1: {len(report['attempts_not_one'])}; "
          f"launches {report['launches']} (cancelled before they began: {report['cancelled_before_start']}); workers started on a job "
          f"their server had not claimed {report['started_unclaimed']}")
    print(f"wall {report['wall_seconds']} s from the first create to the last job seen ended ({calls / report['wall_seconds']:.0f} "
          f"calls/s; first created to last ended in the database: {report['created_to_ended_seconds']} s); {report['list_pages_followed']} "
          f"List pages followed by nextToken")
    for line in report["error_examples"] + report["server_log_errors"] + report["not_completed_examples"]:
        print(f"  error: {line}")
    print("OK" if report["ok"] else "FAILED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = LoadOptions()
    parser.add_argument("--jobs", type=int, default=defaults.jobs)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--client-processes", type=int, default=defaults.client_processes)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--startup-seconds", type=float, default=defaults.startup_seconds, help="A no-op worker's start-up.")
    parser.add_argument("--simulated-seconds", type=float, default=defaults.simulated_seconds, help="A no-op worker's training.")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="Jobs each server runs at once.")
    parser.add_argument("--think-seconds", type=float, default=defaults.think_seconds, help="A client's mean pause between calls.")
    parser.add_argument("--timeout", type=float, default=defaults.timeout)
    parser.add_argument("--output", type=Path, default=RESULTS, help="Where <backend>.json goes.")
    server = parser.add_argument_group("one server (run by the benchmark itself)")
    server.add_argument("--serve", action="store_true")
    for name in ("--home", "--allow", "--node-name", "--runs"):
        server.add_argument(name)
    server.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    options = LoadOptions(jobs=args.jobs, clients=args.clients, client_processes=args.client_processes, startup_seconds=args.startup_seconds,
                          simulated_seconds=args.simulated_seconds, concurrency=args.concurrency, think_seconds=args.think_seconds,
                          timeout=args.timeout)
    ok = True
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        if backend == "postgresql":
            from postgres_server import unavailable

            reason = unavailable()
            if reason:
                print(f"\npostgresql: skipped: {reason}")
                ok = ok and args.backend == "both"
                continue
        print(f"{backend}: starting {SERVERS[backend]} server(s)...", flush=True)
        report = run_backend(backend, options, args.output)
        print_report(report)
        ok = ok and report["ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
