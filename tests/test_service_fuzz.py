"""Bad input never gets a 5xx, never freezes the server, and always comes back in Bedrock's error shape."""

import json
import time
import urllib.error
import urllib.request

import pytest

from fuzz_service import REDOS_NAME, ROLE, Case, run, send
from service_harness import ApiOnlyServer, Server


@pytest.fixture
def api(tmp_path):
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        yield server, tmp_path


def test_hundreds_of_malformed_requests(api):
    server, folder = api
    report = run(server.url, 400, str(folder), seed=1)
    shown = [f"{o.status} {o.case.what}: {o.case.method} {o.case.path[:80]}" for o in report.server_errors + report.unshaped]
    assert not report.server_errors and not report.unshaped, shown
    assert report.health.failures == 0 and report.health.polls > 0
    assert report.slowest.seconds < 2.0, report.lines()  # the README's benchmark reports the real figure
    get = urllib.request.urlopen(server.url + "/health", timeout=5)
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
