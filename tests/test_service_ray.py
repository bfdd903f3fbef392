"""``tunesmith serve --executor ray`` on a local Ray cluster (``ray start --head`` on loopback):
a boto3-created job runs to Completed with the same phases, metrics and events as on the local
executor; a stop works; a killed Ray worker leads to a resume from the checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import arithmetic, write_jsonl
from service_harness import Server, free_port, wait_for
from test_service_jobs import create
from tunesmith.jobs.store import Job, JobStore

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'tunesmith[ray]')")
SHORT = {"epochCount": "1", "learningRate": "0.0001", "learningRateWarmupSteps": "0"}
NO_TOKEN = {"RAY_AUTH_MODE": "disabled"}
"""The cluster and its clients agree, whatever ~/.ray/auth_token a developer's earlier ray.init() left (Ray 2.60
turns token authentication on where that file exists)."""


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node Ray cluster on loopback, as `ray start --head` makes one (stopped with its processes)."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    ray_cli = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, **NO_TOKEN}
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
                             "--temp-dir", temp], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while subprocess.run([ray_cli, "status", "--address", address], capture_output=True, env=env).returncode != 0:
            assert head.poll() is None, f"ray start failed: {head.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the Ray head did not come up in 90 s"
            time.sleep(1)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the head and every process it started (its own session), even after a failed start
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def ray_server(tmp_path, tiny_model, ray_cluster):
    write_jsonl(tmp_path / "t.jsonl", arithmetic(48))
    write_jsonl(tmp_path / "long.jsonl", arithmetic(1600))  # 100 steps, a checkpoint after each
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n')
    (tmp_path / "home").mkdir()
    server = Server(tmp_path / "home", tmp_path, tmp_path / "models.toml", env=NO_TOKEN,
                    options=["--executor", "ray", "--ray-address", ray_cluster, "--save-every", "1"]).start()
    yield server
    server.kill()


def events(server: Server, name: str) -> list[dict]:
    lines = urllib.request.urlopen(f"{server.url}/model-customization-jobs/{name}/events").read().decode().splitlines()
    return [json.loads(line) for line in lines]


def row(server: Server, arn: str) -> Job:
    with JobStore(f"sqlite:///{server.home / 'tunesmith.db'}", migrate=False).session() as session:
        return session.get(Job, arn.rsplit("/", 1)[1])


def wait_for_row(server: Server, arn: str, ready, what: str, timeout: float = 120) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = row(server, arn)
        if ready(job):
            return job
        assert job.status in ("InProgress", "Stopping"), (job.status, job.failure_message)
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout} s")


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_job_runs_to_completed_as_a_ray_task_with_metrics_and_events(ray_server, tmp_path):
    client = ray_server.client()
    arn = create(client, "on-ray", str(tmp_path / "t.jsonl"), str(tmp_path / "out"), hyperParameters=SHORT)
    job = wait_for(client, arn, {"Completed", "Failed", "Stopped"}, timeout=180)
    assert job["status"] == "Completed", job.get("failureMessage")
    assert {d["status"] for d in job["statusDetails"].values()} == {"Completed"}
    log = events(ray_server, "on-ray")
    (start,) = [e for e in log if e["event"] == "start"]
    steps = [e for e in log if e["event"] == "step"]
    assert len(steps) == start["total_steps"] >= 1 and all("loss" in e for e in steps)
    assert (tmp_path / "out").exists() and any((tmp_path / "out").rglob("step_wise_training_metrics.csv"))
    assert start["model"] == "micro" and start["estimated_peak_mb"] < 2000  # the tiny model (the real micro: ~3,100): the server's environment reached the task
    record = row(ray_server, arn)
    assert record.details["executor"] == "ray" and record.attempts == 1
    worker_log = ray_server.home / "jobs" / f"{record.id}.log"
    assert "completed" in worker_log.read_text()  # the worker wrote its log where a local worker does
    server_log = (tmp_path / "server.log").read_text()
    assert "job on-ray started: Ray task " in server_log and "(1 CPU, 0 GPU)" in server_log


def test_a_stop_reaches_a_job_running_on_ray(ray_server, tmp_path):
    client = ray_server.client()
    arn = create(client, "stop-me", str(tmp_path / "long.jsonl"), str(tmp_path / "out"), hyperParameters=SHORT)
    wait_for_row(ray_server, arn, lambda j: bool(j.checkpoints), "checkpoint")
    client.stop_model_customization_job(jobIdentifier=arn)
    job = wait_for(client, arn, {"Completed", "Failed", "Stopped"}, timeout=60)
    assert job["status"] == "Stopped"
    assert job["statusDetails"]["trainingDetails"]["status"] == "Stopped"


def test_a_killed_ray_worker_resumes_its_job_from_the_checkpoint(ray_server, tmp_path):
    client = ray_server.client()
    arn = create(client, "killed", str(tmp_path / "long.jsonl"), str(tmp_path / "out"), hyperParameters=SHORT)
    job = wait_for_row(ray_server, arn, lambda j: len(j.checkpoints or []) >= 2, "second checkpoint")
    ray_worker = parent_pid(job.worker_pid)  # the Ray worker process running the task, not the tunesmith worker
    assert "ray" in Path(f"/proc/{ray_worker}/cmdline").read_bytes().decode(errors="replace").lower()
    os.kill(ray_worker, signal.SIGKILL)
    job = wait_for(client, arn, {"Completed", "Failed", "Stopped"}, timeout=240)
    assert job["status"] == "Completed", job.get("failureMessage")
    starts = [e for e in events(ray_server, "killed") if e["event"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed_from"] >= 2  # resumed, not restarted
    assert row(ray_server, arn).attempts == 2
    assert "Ray lost the job's worker" in (tmp_path / "server.log").read_text()


def test_a_stopping_server_queues_its_ray_jobs_again_and_the_next_one_resumes_them(ray_server, tmp_path, ray_cluster):
    write_jsonl(tmp_path / "longer.jsonl", arithmetic(16000))  # far more steps than the stop takes
    client = ray_server.client()
    arn = create(client, "handed-on", str(tmp_path / "longer.jsonl"), str(tmp_path / "out"), hyperParameters=SHORT)
    wait_for_row(ray_server, arn, lambda j: len(j.checkpoints or []) >= 2, "second checkpoint")
    ray_server.process.send_signal(signal.SIGTERM)  # a graceful stop: the server cancels its tasks
    ray_server.process.wait(timeout=120)  # (uvicorn passes the signal on once it has shut down)
    job = row(ray_server, arn)
    assert job.status == "InProgress" and job.worker_pid is None and job.server_id is None  # queued again, not failed
    assert "queued to resume" in (ray_server.home / "jobs" / f"{job.id}.log").read_text()
    ray_server.start()  # the next server resumes it from the checkpoint the worker wrote when it stopped
    starts = lambda: [e for e in events(ray_server, "handed-on") if e["event"] == "start"]  # noqa: E731
    wait_for_row(ray_server, arn, lambda j: len(starts()) == 2, "second start")
    assert starts()[1]["resumed_from"] >= 2  # resumed, not restarted
    ray_server.client().stop_model_customization_job(jobIdentifier=arn)  # no need to train the rest
    assert wait_for(ray_server.client(), arn, {"Completed", "Failed", "Stopped"}, timeout=60)["status"] == "Stopped"


def test_serve_with_the_ray_executor_needs_an_address_and_a_reachable_cluster(tmp_path):
    from click.testing import CliRunner

    from tunesmith.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--executor", "ray", "--home", str(tmp_path)], env={"RAY_ADDRESS": ""})
    assert result.exit_code == 2 and "--executor ray needs --ray-address" in result.output
    result = CliRunner().invoke(cli, ["serve", "--executor", "ray", "--ray-address", f"127.0.0.1:{free_port()}",
                                      "--home", str(tmp_path)])
    assert result.exit_code == 1 and "cannot reach the Ray cluster at 127.0.0.1:" in result.output, result.output
    result = CliRunner().invoke(cli, ["serve", "--executor", "ray", "--ray-address", "head-node", "--home", str(tmp_path)])
    assert result.exit_code == 1 and "--ray-address head-node: expected auto, local, HOST:PORT or ray://HOST:PORT" in result.output
