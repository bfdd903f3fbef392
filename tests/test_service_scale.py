"""Two ``tunesmith serve`` processes, two "nodes", share one PostgreSQL database and one home
(a shared filesystem, where the checkpoints are): every job runs exactly once, and a job whose
server is killed (kill -9, workers included) is taken over by the other server once its lease
lapses, and resumes from its checkpoint."""

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import arithmetic, write_jsonl
from service_harness import Server, wait_for
from test_service_jobs import create
from tunesmith.jobs.store import Job, JobStore

LEASE_SECONDS = "4"
SHORT = {"epochCount": "1", "learningRate": "0.0001", "learningRateWarmupSteps": "0"}


def events(server: Server, name: str) -> list[dict]:
    lines = urllib.request.urlopen(f"{server.url}/model-customization-jobs/{name}/events").read().decode().splitlines()
    return [json.loads(line) for line in lines]


def command_lines() -> list[str]:
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append(path.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # ended meanwhile
            pass
    return found


def test_two_servers_share_a_postgres_database_and_take_over_a_dead_servers_job(tmp_path, tiny_model, postgres):
    url = postgres.new_database()
    write_jsonl(tmp_path / "t.jsonl", arithmetic(32))  # two steps: the 20 jobs are about starting workers, not training
    write_jsonl(tmp_path / "long.jsonl", arithmetic(1200))  # 75 steps, a checkpoint every 5
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n')
    (tmp_path / "home").mkdir()
    servers = {node: Server(tmp_path / "home", tmp_path, tmp_path / "models.toml", options=["--save-every", "5"],
                            env={"TUNESMITH_DATABASE_URL": url, "TUNESMITH_NODE_NAME": node, "TUNESMITH_LEASE_SECONDS": LEASE_SECONDS})
               for node in ("node-a", "node-b")}
    with ThreadPoolExecutor(2) as pool:  # together: both migrate the new database at once, and take turns
        list(pool.map(Server.start, servers.values()))
    store = JobStore(url, migrate=False)
    try:
        clients = [server.client() for server in servers.values()]
        arns = {f"job-{i:02d}": create(clients[i % 2], f"job-{i:02d}", str(tmp_path / "t.jsonl"), str(tmp_path / "out"),
                                       hyperParameters=SHORT) for i in range(20)}
        assert not [line for line in command_lines() if url in line]  # servers and workers have it in their environment only
        for name, arn in arns.items():
            job = wait_for(clients[0], arn, {"Completed", "Failed", "Stopped"}, timeout=150)
            assert job["status"] == "Completed", (name, job.get("failureMessage"))
        with store.session() as session:
            jobs = session.query(Job).all()
            assert sorted(j.attempts for j in jobs) == [1] * 20  # each job had exactly one worker
            assert {j.details["node"] for j in jobs} == {"node-a", "node-b"}  # and both servers ran some
        assert all([e["event"] for e in events(servers["node-a"], name)].count("start") == 1 for name in arns)

        long_arn = create(clients[0], "long", str(tmp_path / "long.jsonl"), str(tmp_path / "out"), hyperParameters=SHORT)
        deadline = time.monotonic() + 90
        while True:
            with store.session() as session:
                job = session.get(Job, long_arn.rsplit("/", 1)[1])
                if job.checkpoints:
                    node = job.worker_node
                    break
            assert time.monotonic() < deadline, "no checkpoint yet"
            time.sleep(0.1)
        servers.pop(node).kill()  # kill -9, its worker with it, just after the first checkpoint
        (survivor_node, survivor), = servers.items()

        job = wait_for(survivor.client(), long_arn, {"Completed", "Failed", "Stopped"}, timeout=120)
        assert job["status"] == "Completed", job.get("failureMessage")
        starts = [e for e in events(survivor, "long") if e["event"] == "start"]
        assert len(starts) == 2 and starts[0]["resumed_from"] == 0 and starts[1]["resumed_from"] >= 5  # resumed, not restarted
        with store.session() as session:
            job = session.get(Job, long_arn.rsplit("/", 1)[1])
            assert job.attempts == 2 and job.details["node"] == survivor_node and job.worker_pid is None
    finally:
        for server in servers.values():
            server.kill()
        store.engine.dispose()
