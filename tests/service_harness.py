"""Start a real ``tunesmith serve`` on a loopback port and talk to it with boto3."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A ``tunesmith serve`` subprocess (its own process group, so kill -9 takes the workers too)."""

    def __init__(self, home: Path, allowed: Path, model_config: Path, env: dict | None = None, options: list[str] | None = None):
        self.home, self.allowed, self.model_config = home, allowed, model_config
        self.extra_env, self.options = env or {}, options or []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        env = {**os.environ, "TUNESMITH_CONFIG": str(self.model_config), **self.extra_env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tunesmith", "serve", "--port", str(self.port), "--home", str(self.home),
             "--allow-path", str(self.allowed), *self.options],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=open(self.home.parent / "server.log", "ab"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start; see server.log")

    def kill(self) -> None:
        """kill -9 the server and every worker it started."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
            self.process = None

    def kill_workers(self) -> None:
        for pid in _descendants(self.process.pid):
            os.kill(pid, signal.SIGKILL)

    def client(self, service: str = "bedrock", key: str = "test", secret: str = "test", **config):
        return boto3.client(
            service, endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=key,
            aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}, **config),
        )


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    children = [int(p) for p in out]
    return children + [d for c in children for d in _descendants(c)]


def wait_for(client, job_arn: str, statuses: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_model_customization_job(jobIdentifier=job_arn)
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job still {job['status']} after {timeout}s: {job}")


class ApiOnlyServer:
    """The API without workers, in a thread: for control-plane tests that must not train."""

    def __init__(self, home: Path, allowed: Path, credentials: dict | None = None, **settings):
        import threading

        import uvicorn

        from tunesmith.server import ServiceSettings, create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = ServiceSettings(home=home, allowed_roots=[str(allowed)], run_workers=False, credentials=credentials or {},
                                   **settings)
        self.app = create_app(settings)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ApiOnlyServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    client = Server.client
