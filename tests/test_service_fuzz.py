"""Bad input never gets a 5xx, never freezes the server, and always comes back in Bedrock's error shape."""

import json
import os
import time
import urllib.error
import urllib.request

import pytest

from fuzz_service import ESCAPE, REDOS_NAME, ROLE, URI_FIELDS, Case, run, send
from service_harness import ApiOnlyServer, Server

CASES = int(os.environ.get("FUZZ_CASES", "3000"))
"""About 15 s against a real server on 2 cores; the acceptance figure is 3,000 with 0 5xx."""


@pytest.fixture
def api(tmp_path):
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        yield server, tmp_path


def test_thousands_of_malformed_requests_against_tunesmith_serve(tmp_path):
    """A real ``tunesmith serve`` (its workers take the jobs that get through); bad URIs in every field that takes one."""
    data, home = tmp_path / "data", tmp_path / "home"
    for folder in (data, home, tmp_path / "elsewhere"):
        folder.mkdir()
    (data / ESCAPE).symlink_to(tmp_path / "elsewhere")  # a symlink out of the allowed folder
    server = Server(home, data, tmp_path / "models.toml", options=["--devices", "cpu"]).start()
    try:
        report = run(server.url, CASES, str(data), seed=1)
        get = urllib.request.urlopen(server.url + "/health", timeout=5)
    finally:
        server.kill()
    print("\n".join(report.lines()))
    shown = [f"{o.status} {o.case.what}: {o.case.method} {o.case.path[:80]} {(o.case.body or b'')[:300]!r}"
             for o in report.server_errors + report.unshaped]
    assert len(report.outcomes) == CASES and not report.server_errors and not report.unshaped, shown
    fields = {o.case.what for o in report.outcomes if o.case.what.startswith("URI")}
    assert {f"URI in {where}" for where in URI_FIELDS} <= fields and len(fields) == len(URI_FIELDS) + 8, sorted(fields)
    assert report.health.failures == 0 and report.health.polls > 0
    assert report.slowest.seconds < 2.0, report.lines()  # the README's benchmark reports the real figure
    assert get.status == 200


def test_adversarial_job_name_answers_at_once(api):
    """``a`` + 61 hyphens + ``!`` backtracked exponentially in the old pattern (minutes)."""
    server, folder = api
    body = {"jobName": REDOS_NAME, "customModelName": "m", "roleArn": ROLE, "baseModelIdentifier": "micro",
            "trainingDataConfig": {"s3Uri": str(folder / "t.jsonl")}, "outputDataConfig": {"s3Uri": str(folder / "out")}}
    assert len(REDOS_NAME) == 63
    send(server.url, Case("GET", "/health"))  # warm the connection path
    outcome = send(server.url, Case("POST", "/model-customization-jobs", json.dumps(body).encode(), {"Content-Type": "application/json"}))
    assert outcome.status == 400 and outcome.error_type == "ValidationException"
    assert outcome.seconds < 0.05, f"{outcome.seconds * 1000:.1f} ms"


def test_unknown_route_and_id_carry_the_error_type(api):
    server, _ = api
    client = server.client()
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_model_customization_job(jobIdentifier="no-such-job")
    outcome = send(server.url, Case("GET", "/no/such/route"))
    assert outcome.status == 404 and outcome.error_type == "UnknownOperationException"


def test_unknown_fields_and_wrong_types_are_refused_by_name(api):
    server, folder = api
    client = server.client()
    body = {"jobName": "j", "customModelName": "m", "roleArn": ROLE, "baseModelIdentifier": "micro",
            "trainingDataConfig": "x", "outputDataConfig": {"s3Uri": str(folder / "out")}, "surprise": 1}
    request = urllib.request.Request(server.url + "/model-customization-jobs", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    assert info.value.code == 400 and info.value.headers["x-amzn-ErrorType"] == "ValidationException"
    message = json.loads(info.value.read())["message"]
    assert "trainingDataConfig must be a JSON object, not a string" in message and "surprise is not a field of this request" in message
    with pytest.raises(client.exceptions.ValidationException, match=r"clientRequestToken 'a+\.\.\.' is 257 characters long; the maximum is 256"):
        client.create_model_customization_job(
            jobName="j", customModelName="m", roleArn=ROLE, baseModelIdentifier="micro",
            trainingDataConfig={"s3Uri": str(folder / "t.jsonl")}, outputDataConfig={"s3Uri": str(folder / "o")},
            hyperParameters={}, clientRequestToken="a" * 257)  # botocore does not check lengths: the server does


def _peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_50_mb_body_is_refused_quickly_with_bounded_memory(tmp_path):
    (tmp_path / "home").mkdir()
    server = Server(tmp_path / "home", tmp_path, tmp_path / "models.toml").start()
    try:
        before = _peak_rss_mb(server.process.pid)
        started = time.perf_counter()
        big = send(server.url, Case("POST", "/model-customization-jobs", b"x" * (50 << 20), {"Content-Type": "application/json"}))
        seconds = time.perf_counter() - started
        streamed = send(server.url, Case("POST", "/model-customization-jobs", b"{" + b" " * (3 << 20),
                                         {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}))
        rise = _peak_rss_mb(server.process.pid) - before
    finally:
        server.kill()
    assert big.status == 413 and big.error_type == "ValidationException"
    assert seconds < 2.0
    assert streamed.status in (400, 413) and streamed.error_type
    assert rise < 20, f"peak RSS rose {rise:.1f} MB"
