"""`tunesmith tune --endpoint`: the search's trials as jobs on a real `tunesmith serve`, two at once.

The server trains the tiny model, configured as the micro tier with a batch of 8 (as in
test_tune.py's searches), with two workers; the search follows the jobs' events, prunes
through StopModelCustomizationJob and scores completed jobs through Converse.
"""

import csv
import json
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from conftest import arithmetic, write_jsonl
from service_harness import ApiOnlyServer, Server, free_port
from tunesmith.cli import cli
from tunesmith.tuning import Budget
from tunesmith.tuning.budget import BudgetTracker
from tunesmith.tuning.table import COLUMNS


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def remote(tmp_path, tiny_model, monkeypatch):
    """60 records (12 held out): the advice trains 300 steps, the search's trials 54 and 144, long enough
    past the pruner's first rung (step 20) for a stop to land before the job ends (a worker checks for
    one every second, and the tiny model trains tens of steps a second); the tune command's arguments
    without --endpoint and --output."""
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 8\n')
    data = write_jsonl(tmp_path / "data.jsonl", arithmetic(60))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the server's workers: a 16-wide model gains nothing from more threads
    (tmp_path / "server-home").mkdir()
    return ["tune", data, "--model", "micro", "--budget", "10min"]


def test_the_budget_counts_the_trials_in_flight():
    tracker = BudgetTracker(Budget(100, "tokens"), [])
    assert tracker.allows_another([5.0])  # before any trial has finished, the first trials start side by side
    tracker.add(20, 1.0)
    assert tracker.allows_another([5.0])  # 20 spent + 20 (the running one, as an average trial) + 20 <= 100
    assert not tracker.allows_another([5.0, 30.0, 10.0])  # 20 + 20 + 30 + 20 + 20 > 100
    assert tracker.left([30.0, 10.0]) == 40 and not tracker.exhausted([30.0, 10.0]) and tracker.exhausted([50.0, 30.0])


def test_trials_run_as_jobs_two_at_once_pruned_ones_are_stopped(tmp_path, remote):
    out = tmp_path / "search"
    server = Server(tmp_path / "server-home", tmp_path, tmp_path / "models.toml", options=["--concurrency", "2"]).start()
    try:
        result = run(*remote, "--output", out, "--endpoint", server.url, "--parallel", 2, "--trials", 4, "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        trials = report["trials"]
        jobs = server.client().list_model_customization_jobs(maxResults=100)["modelCustomizationJobSummaries"]
        by_trial = {int(job["jobName"].rsplit("-", 1)[1]): job for job in jobs}

        assert [t["origin"] for t in trials[:2]] == ["advice", "defaults"]
        assert sorted(by_trial) == [t["trial"] for t in trials] == [0, 1, 2, 3]  # every trial, the reference ones too, was a job
        assert trials[0]["plannedSteps"] == 300  # the advice's 10x duplication reached the worker: 48 records x 10 / 8 x 5 epochs
        for t in trials:
            assert by_trial[t["trial"]]["status"] == {"complete": "Completed", "pruned": "Stopped"}[t["state"]]
            assert (t["exactMatch"] is not None) == (t["state"] == "complete")
            assert t["tokens"] > 0 and t["seconds"] > 0 and 0 < t["steps"] <= t["plannedSteps"]
        pruned = [t for t in trials if t["state"] == "pruned"]
        assert pruned and all(t["stoppedBy"] == "pruner" and t["steps"] < t["plannedSteps"] for t in pruned), result.stderr

        # Two jobs were InProgress at the same time: one was created before the other ended.
        spans = [(job["creationTime"], job["endTime"]) for job in jobs]
        assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:])

        with open(out / "trials.csv", newline="") as handle:
            table = list(csv.DictReader(handle))
        assert list(table[0]) == COLUMNS and [row["state"] for row in table] == [t["state"] for t in trials]
        assert json.loads((out / "best.json").read_text()) == report["best"] is not None
        assert "Traceback" not in result.output
    finally:
        server.kill()


def test_sigterm_stops_the_jobs_in_flight_and_queues_their_settings_again(tmp_path, remote):
    out = tmp_path / "search"
    server = Server(tmp_path / "server-home", tmp_path, tmp_path / "models.toml", options=["--concurrency", "2"]).start()
    try:
        args = [sys.executable, "-m", "tunesmith", *map(str, remote), "--output", str(out), "--endpoint", server.url]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        client, deadline = server.client(), time.monotonic() + 120
        while not any(job.get("statusDetails", {}).get("trainingDetails", {}).get("status") == "InProgress"
                      for job in client.list_model_customization_jobs()["modelCustomizationJobSummaries"]):
            assert process.poll() is None and time.monotonic() < deadline, "no job started training"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        assert "settings are queued again" in stderr and "rerun the same command to continue" in stderr

        time.sleep(2)  # a stopped job's worker ends at its next micro-batch
        jobs = client.list_model_customization_jobs()["modelCustomizationJobSummaries"]
        with open(out / "trials.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        status = {int(job["jobName"].rsplit("-", 1)[1]): job["status"] for job in jobs}
        failed = [row for row in rows if row["state"] == "failed"]
        assert failed and set(status.values()) <= {"Completed", "Stopped"}
        # Each trial in flight was stopped; a short one may have completed before its stop landed.
        assert {n for n, s in status.items() if s == "Stopped"} <= {int(row["trial"]) for row in failed}
        assert status[0] == "Stopped"  # the advice trains 300 steps: it was surely in flight
        retries = [row for row in rows if row["retryOf"]]
        assert sorted(row["retryOf"] for row in retries) == sorted(row["trial"] for row in failed)
        assert all(row["state"] == "waiting" for row in retries)  # the same command runs them again
    finally:
        server.kill()


def test_an_unreachable_endpoint_is_one_clear_line(tmp_path, remote):
    url = f"http://127.0.0.1:{free_port()}"
    result = run(*remote, "--output", tmp_path / "s", "--endpoint", url)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the tunesmith server at {url} ("), result.output
    assert not (tmp_path / "s" / "study.db").exists()


def test_a_server_that_may_not_use_the_folder_names_allow_path(tmp_path, remote):
    (tmp_path / "elsewhere").mkdir()
    with ApiOnlyServer(tmp_path / "server-home", tmp_path / "elsewhere") as server:
        result = run(*remote, "--output", tmp_path / "s", "--endpoint", server.url)
    assert result.exit_code == 1
    assert f"the server at {server.url} may not use the search's files" in result.output
    assert f"restart `tunesmith serve` with --allow-path {tmp_path / 's'}" in result.output
    assert "Traceback" not in result.output


def test_settings_a_job_cannot_carry_are_refused(tmp_path, remote):
    result = run(*remote, "--output", tmp_path / "s", "--endpoint", "http://127.0.0.1:1", "--precision", "fp32", "--lora-rank", 8)
    assert result.exit_code == 1
    assert "error: --precision, --lora-rank cannot be sent to a server's jobs" in result.output
    alone = run(*remote, "--output", tmp_path / "s", "--parallel", 2)
    assert alone.exit_code == 1 and "error: --parallel runs trials side by side on a server's workers: give --endpoint too" in alone.output
