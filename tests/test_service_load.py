"""``benchmarks/service_load.py`` at a small scale, so the load benchmark keeps working: one
server on SQLite, 40 jobs created and polled by 5 clients in 2 processes, the no-op executor
standing in for training. Every call answers, every job completes, and each ran exactly once."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import service_load  # noqa: E402


def test_forty_jobs_and_five_clients_on_sqlite_without_errors_or_duplicate_runs(tmp_path):
    options = service_load.LoadOptions(jobs=40, clients=5, client_processes=2, startup_seconds=0.2, simulated_seconds=0.05, timeout=120)
    report = service_load.run_backend("sqlite", options, tmp_path)
    assert report["errors"] == 0, report["error_examples"]
    assert report["server_log_errors"] == []
    assert report["statuses"] == {"Completed": 40} and report["jobs_completed"] == 40 and report["custom_models"] == 40
    assert report["duplicate_runs"] == [] and report["attempts_not_one"] == []
    assert report["launches"] == 40 and report["cancelled_before_start"] == 0 and report["started_unclaimed"] == 0  # claimed, then launched
    assert report["operations"]["Create"]["calls"] == 40 and report["operations"]["Get"]["calls"] >= 40
    assert report["operations"]["List"]["calls"] > 0
    assert report["ok"]
    assert json.loads((tmp_path / "sqlite.json").read_text())["jobs_completed"] == 40
