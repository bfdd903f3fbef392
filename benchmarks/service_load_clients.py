"""The client side of ``service_load.py``: boto3 clients, in threads spread over spawned
processes (so the client side's GIL does not set the latency), that create their jobs and poll
them until every one has ended, timing each call.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service_load import LoadOptions

OPERATIONS = ("Create", "Get", "List")
TERMINAL = ("Completed", "Failed", "Stopped")
LIST_SHARE = 0.2
"""Of a client's calls, the share that list jobs (the rest get one of its jobs)."""


@dataclass
class ClientWork:
    """What one client thread does: its server, its jobs, the request they share."""

    url: str
    names: list[str]
    request: dict
    seed: int
    think_seconds: float


class Client:
    """One boto3 client: creates its jobs, then polls them (and lists jobs) until told to stop."""

    def __init__(self, work: ClientWork):
        import boto3
        from botocore.config import Config

        self.work, self.random = work, random.Random(work.seed)
        self.bedrock = boto3.session.Session().client(
            "bedrock", endpoint_url=work.url, region_name="us-east-1", aws_access_key_id="load", aws_secret_access_key="load",
            config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=120))
        self.timings: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        self.errors: Counter = Counter()
        self.examples: list[str] = []
        self.statuses: dict[str, str] = {}
        self.pages = 0

    def call(self, operation: str, method, **parameters) -> dict | None:
        started = time.perf_counter()
        try:
            answer = method(**parameters)
            status = answer["ResponseMetadata"]["HTTPStatusCode"]
            if not 200 <= status < 300:
                raise RuntimeError(f"HTTP {status}")
        except Exception as exc:
            self.errors[operation] += 1
            if len(self.examples) < 5:
                self.examples.append(f"{operation}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
            return None
        self.timings[operation].append((time.perf_counter() - started) * 1000)
        return answer

    def create(self) -> deque:
        pending = deque()
        for name in self.work.names:
            if self.call("Create", self.bedrock.create_model_customization_job,
                         **{**self.work.request, "jobName": name, "customModelName": f"{name}-model"}):
                pending.append(name)
            else:
                self.statuses[name] = "NotCreated"
        return pending

    def get(self, pending: deque) -> None:
        name = pending.popleft() if pending else self.random.choice(self.work.names)
        job = self.call("Get", self.bedrock.get_model_customization_job, jobIdentifier=name)
        status = job["status"] if job else None
        if status in TERMINAL:
            self.statuses[name] = status
        elif name not in self.statuses:
            pending.append(name)  # polled again after the client's other pending jobs

    def list(self) -> None:
        parameters = {"maxResults": self.random.choice((10, 50, 100))}
        if self.random.random() < 0.3:
            parameters["statusEquals"] = "InProgress"
        for _ in range(self.random.randint(1, 5)):
            page = self.call("List", self.bedrock.list_model_customization_jobs, **parameters)
            if not page or "nextToken" not in page:
                return
            parameters["nextToken"] = page["nextToken"]
            self.pages += 1

    def poll(self, pending: deque, stop, done) -> None:
        announced = False
        while not stop.is_set():
            if not pending and not announced:
                with done.get_lock():
                    done.value += 1
                announced = True
            if self.random.random() < LIST_SHARE or not self.work.names:
                self.list()
            else:
                self.get(pending)
            if self.work.think_seconds:
                stop.wait(self.random.uniform(0, 2 * self.work.think_seconds))
        if not announced:
            self.statuses.update({name: "NotEnded" for name in pending})

    def report(self) -> dict:
        return {"timings": self.timings, "errors": dict(self.errors), "examples": self.examples, "statuses": self.statuses,
                "pages": self.pages}


def client_process(works: list[ClientWork], ready, go, stop, done, results) -> None:
    """Runs its clients in threads; puts their merged report on ``results``."""
    reports: list[dict] = []

    def one(work: ClientWork) -> None:
        client = None
        try:
            client = Client(work)
            client.bedrock.list_model_customization_jobs(maxResults=1)  # untimed: the client's and server's first-call costs
        except Exception as exc:  # counted as an error; its jobs are never created
            reports.append({"timings": {}, "errors": {"Setup": 1}, "examples": [f"Setup: {type(exc).__name__}: {exc}"],
                            "statuses": {}, "pages": 0})
            client = None
        finally:
            with ready.get_lock():
                ready.value += 1
        go.wait()
        if client is None:
            with done.get_lock():
                done.value += 1
            return
        client.poll(client.create(), stop, done)
        reports.append(client.report())

    threads = [threading.Thread(target=one, args=(work,)) for work in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(merge(reports))


def merge(reports: list[dict]) -> dict:
    merged = {"timings": {op: [] for op in OPERATIONS}, "errors": Counter(), "examples": [], "statuses": {}, "pages": 0}
    for report in reports:
        for operation, values in report["timings"].items():
            merged["timings"][operation] += values
        merged["errors"].update(report["errors"])
        merged["examples"] += report["examples"][: 5 - len(merged["examples"])]
        merged["statuses"].update(report["statuses"])
        merged["pages"] += report["pages"]
    merged["errors"] = dict(merged["errors"])
    return merged


def run_clients(urls: list[str], folder: Path, options: LoadOptions) -> tuple[dict, float]:
    """All clients, from their first create until each saw its jobs end; the merged report and the wall seconds."""
    (folder / "train.jsonl").write_text(json.dumps({"schemaVersion": "bedrock-conversation-2024", "messages": [
        {"role": "user", "content": [{"text": "What is 1 plus 1?"}]}, {"role": "assistant", "content": [{"text": "2."}]}]}) + "\n")
    request = {"roleArn": "arn:aws:iam::123456789012:role/load", "baseModelIdentifier": "amazon.nova-micro-v1:0:128k",
               "trainingDataConfig": {"s3Uri": str(folder / "train.jsonl")}, "outputDataConfig": {"s3Uri": str(folder / "out")},
               "hyperParameters": {"epochCount": "1", "learningRate": "0.0001", "learningRateWarmupSteps": "0"}}
    names = [f"load-{i:05d}" for i in range(options.jobs)]
    works = [ClientWork(urls[c % len(urls)], names[c::options.clients], request, c, options.think_seconds)
             for c in range(options.clients)]
    context = mp.get_context("spawn")  # no fork of a process holding database connections and threads
    ready, done = context.Value("i", 0), context.Value("i", 0)
    go, stop, results = context.Event(), context.Event(), context.Queue()
    processes = [context.Process(target=client_process, args=(works[p::options.client_processes], ready, go, stop, done, results))
                 for p in range(options.client_processes)]
    for process in processes:
        process.start()
    while ready.value < options.clients:
        if any(p.exitcode not in (None, 0) for p in processes):
            raise RuntimeError("a client process failed to start")
        time.sleep(0.05)
    started = time.perf_counter()
    go.set()
    last_report = started
    while done.value < options.clients and time.perf_counter() - started < options.timeout:
        time.sleep(0.1)
        if time.perf_counter() - last_report >= 10:
            last_report = time.perf_counter()
            print(f"  {last_report - started:6.1f} s: {done.value}/{options.clients} clients saw all their jobs end", flush=True)
    wall = time.perf_counter() - started
    stop.set()
    reports = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return merge(reports), wall
