"""Logs and metrics of the service: /metrics read back with Prometheus's own parser (route
templates, console included; generated tokens and model loads after real answers of a tiny
model), the access log and job lifecycle lines, --credentials on /metrics, and one real job
through ``tunesmith serve --log-level info``."""

import datetime as dt
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request

import openai
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from prometheus_client.parser import text_string_to_metric_families

from conftest import arithmetic, write_jsonl
from service_harness import ApiOnlyServer, Server, wait_for
from tunesmith.jobs.errors import ValidationException
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.logs import configure_logging, safe_database_url
from tunesmith.jobs.store import Job

ROLE = "arn:aws:iam::123456789012:role/tunesmith"
LATENCY = "tunesmith_http_request_duration_seconds"
TOKENS, LOADS, LOAD_TIME = "tunesmith_generated_tokens_total", "tunesmith_model_loads_total", "tunesmith_model_load_seconds"
BASE, CUSTOM = (("kind", "base"),), (("kind", "custom"),)


def create(client, folder, name):
    return client.create_model_customization_job(
        jobName=name, customModelName=f"{name}-model", roleArn=ROLE, baseModelIdentifier="amazon.nova-micro-v1:0:128k",
        trainingDataConfig={"s3Uri": f"file://{folder}/t.jsonl"}, outputDataConfig={"s3Uri": f"file://{folder}/out"},
        hyperParameters={"epochCount": "2", "learningRate": "0.0001", "learningRateWarmupSteps": "1"},
    )["jobArn"]


def scrape(url: str, headers: dict | None = None) -> dict[tuple[str, tuple], float]:
    """/metrics parsed by prometheus_client: {(sample name, sorted labels): value}."""
    request = urllib.request.Request(f"{url}/metrics", headers=headers or {})
    with urllib.request.urlopen(request) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def status_code(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def api(tmp_path):
    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        yield server, tmp_path


def test_jobs_by_status_and_queue_depth(api):
    server, folder = api
    client = server.client()
    for name in ("one", "two", "three"):
        create(client, folder, name)
    client.stop_model_customization_job(jobIdentifier="three")  # nobody runs it: Stopped at once
    metrics = scrape(server.url)
    by_status = {labels[0][1]: value for (name, labels), value in metrics.items() if name == "tunesmith_jobs"}
    assert by_status == {"InProgress": 2, "Completed": 0, "Failed": 0, "Stopping": 0, "Stopped": 1}
    assert metrics[("tunesmith_jobs_queued", ())] == 2 and metrics[("tunesmith_jobs_running", ())] == 0
    assert not any(name.startswith("tunesmith_job_") for name, _ in metrics)  # no running job, no progress


def test_running_jobs_report_step_rate_and_tokens_per_second_from_their_events(api):
    server, folder = api
    create(server.client(), folder, "busy")
    store = server.app.state.store
    with store.session() as session:  # what the supervisor and the worker record for a running job
        job = session.query(Job).filter_by(name="busy").one()
        job.worker_pid, job.details = os.getpid(), {"plan": {"totalSteps": 12}}
        session.commit()
        events = JobFolder(server.app.state.settings.home, job.id).events
    events.parent.mkdir(parents=True)
    lines = [
        {"event": "start", "resumed_from": 0, "total_steps": 12},
        {"event": "step", "step": 1, "epoch": 0, "loss": 2.5, "lr": 1e-4, "tokens_per_s": 800.0, "elapsed_s": 1.0, "eta_s": 11.0},
        {"event": "validation", "step": 1, "epoch": 0, "loss": 2.4},
        {"event": "step", "step": 2, "epoch": 0, "loss": 2.25, "lr": 1e-4, "tokens_per_s": 1000.0, "elapsed_s": 1.5, "eta_s": 5.0},
    ]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"event": "step", "st')  # the last line is still being written
    metrics = scrape(server.url)
    job = (("job", "busy"),)
    assert metrics[("tunesmith_jobs_running", ())] == 1 and metrics[("tunesmith_jobs_queued", ())] == 0
    assert metrics[("tunesmith_job_step", job)] == 2 and metrics[("tunesmith_job_total_steps", job)] == 12
    assert metrics[("tunesmith_job_training_loss", job)] == 2.25
    assert metrics[("tunesmith_job_tokens_per_second", job)] == 1000.0
    assert metrics[("tunesmith_job_steps_per_second", job)] == pytest.approx(2.0)  # one step in 0.5 s of training


def test_latency_histogram_is_labelled_by_route_template_not_raw_path(api):
    server, folder = api
    client = server.client()
    create(client, folder, "secret-project-name")
    client.get_model_customization_job(jobIdentifier="secret-project-name")
    assert status_code(f"{server.url}/no/such/thing") == 404
    metrics = scrape(server.url)
    counts = {dict(labels)["route"]: value for (name, labels), value in metrics.items()
              if name == f"{LATENCY}_count" and dict(labels)["method"] in ("GET", "POST")}
    assert counts["/model-customization-jobs/{identifier}"] == 1
    assert metrics[(f"{LATENCY}_count", (("method", "POST"), ("route", "/model-customization-jobs"), ("status", "201")))] == 1
    assert counts["<unmatched>"] == 1
    assert not any("secret-project-name" in str(labels) or "/no/such" in str(labels) for _, labels in metrics)
    buckets = [v for (name, labels), v in metrics.items() if name == f"{LATENCY}_bucket" and ("le", "+Inf") in labels]
    assert sum(buckets) == sum(v for (name, _), v in metrics.items() if name == f"{LATENCY}_count")


def test_console_pages_and_static_files_are_labelled_by_their_full_template(api):
    """The console's router is included under /console and its assets are a mounted app: the
    labels are still the full templates, and a path nothing serves stays <unmatched>."""
    server, folder = api
    create(server.client(), folder, "console-job")
    for path in ("/console/jobs/console-job", "/console/static/htmx.min.js", "/console/static/no-such.js",
                 "/console/no-such-page", "/no/such/thing"):
        status_code(f"{server.url}{path}")
    metrics = scrape(server.url)
    counts = {(dict(labels)["route"], dict(labels)["status"]): value for (name, labels), value in metrics.items()
              if name == f"{LATENCY}_count" and dict(labels)["method"] == "GET"}
    assert counts == {("/console/jobs/{name}", "200"): 1, ("/console/static/{path}", "200"): 1,
                      ("/console/static/{path}", "404"): 1, ("/console/{rest}", "404"): 1, ("<unmatched>", "404"): 1}
    assert not any(raw in str(labels) for _, labels in metrics for raw in ("console-job", "htmx", "no-such", "/no/such"))


def test_openmetrics_when_the_scraper_asks_for_it(api):
    server, _ = api
    request = urllib.request.Request(f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.read().endswith(b"# EOF\n")


def test_access_log_has_one_line_per_request_without_query_or_secrets(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tunesmith")
    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(tmp_path / "home", tmp_path, credentials={"AKIDTUNESMITH": "s3cret-value"}) as server:
        signed = server.client(key="AKIDTUNESMITH", secret="s3cret-value")
        signed.list_model_customization_jobs(maxResults=5, nameContains="hidden-query")
        assert status_code(f"{server.url}/metrics", {"Authorization": "Bearer s3cret-value"}) == 200
    access = [r.getMessage() for r in caplog.records if r.name == "tunesmith.access"]
    assert len(access) == 2
    assert re.fullmatch(r"GET /model-customization-jobs 200 \d+\.\dms 127\.0\.0\.1:\d+", access[0]), access[0]
    assert re.fullmatch(r"GET /metrics 200 \d+\.\dms 127\.0\.0\.1:\d+", access[1]), access[1]
    assert "s3cret-value" not in caplog.text and "hidden-query" not in caplog.text and "AKIDTUNESMITH" not in caplog.text


# -- --credentials on /metrics --------------------------------------------------------------------
def sigv4_headers(url: str, key: str, secret: str) -> dict:
    request = AWSRequest(method="GET", url=url, data=b"")
    request.context["timestamp"] = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    SigV4Auth(Credentials(key, secret), "bedrock", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def test_metrics_with_credentials_needs_the_bearer_secret_or_a_signature(tmp_path):
    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(tmp_path / "home", tmp_path, credentials={"AKIDTUNESMITH": "s3cret"}) as server:
        url = f"{server.url}/metrics"
        assert status_code(url) == 403
        assert status_code(url, {"Authorization": "Bearer wrong"}) == 403
        assert status_code(url, {"Authorization": "Bearer AKIDTUNESMITH"}) == 403  # the key is not the secret
        assert status_code(url, {"Authorization": "Bearer s3cret"}) == 200
        assert status_code(url, sigv4_headers(url, "AKIDTUNESMITH", "s3cret")) == 200
        assert status_code(url, sigv4_headers(url, "AKIDTUNESMITH", "wrong")) == 403
        assert ("tunesmith_jobs_queued", ()) in scrape(server.url, {"Authorization": "Bearer s3cret"})


# -- job lifecycle lines ---------------------------------------------------------------------------
class FakeWorker:
    """Stands in for a worker process; ``code`` set = it exited."""

    started: list["FakeWorker"] = []

    def __init__(self, command, env=None, stdout=None, stderr=None):
        self.pid, self.code = 50_000 + len(FakeWorker.started), None
        FakeWorker.started.append(self)

    def poll(self):
        return self.code

    def terminate(self):
        self.code = -15

    def wait(self):
        return self.code


def test_supervisor_logs_created_started_and_a_worker_that_died(api, monkeypatch, caplog):
    from tunesmith.jobs.executors import local as local_executor

    server, folder = api
    caplog.set_level(logging.INFO, logger="tunesmith")
    FakeWorker.started = []
    monkeypatch.setattr(local_executor.subprocess, "Popen", FakeWorker)
    create(server.client(), folder, "doomed")
    supervisor = server.app.state.supervisor
    supervisor.tick()
    FakeWorker.started[0].code = -9
    supervisor.tick()
    lines = [r.getMessage() for r in caplog.records if r.name == "tunesmith.service.jobs"]
    assert lines[0] == "job doomed created: FINE_TUNING of amazon.nova-micro-v1:0:128k"
    assert lines[1] == f"job doomed started: worker pid {FakeWorker.started[0].pid} on cpu"
    assert lines[2].startswith(f"job doomed: its worker (worker pid {FakeWorker.started[0].pid} on cpu) died (exit code -9); see ")
    assert lines[3].startswith("job doomed failed: the worker process exited unexpectedly (exit code -9)")
    assert [r.levelname for r in caplog.records if r.name == "tunesmith.service.jobs"] == ["INFO", "INFO", "WARNING", "INFO"]
    assert scrape(server.url)[("tunesmith_jobs", (("status", "Failed"),))] == 1


# -- logging set-up ----------------------------------------------------------------------------------
def test_configure_logging_sets_the_level_once_and_masks_database_passwords():
    logger = logging.getLogger("tunesmith")
    saved = logger.level, logger.propagate, list(logger.handlers)
    try:
        configure_logging("debug")
        configure_logging("warning")
        assert logger.level == logging.WARNING and len([h for h in logger.handlers if getattr(h, "tunesmith", False)]) == 1
        with pytest.raises(ValueError, match="log level 'loud' is not one of debug, info, warning, error"):
            configure_logging("loud")
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]
    assert safe_database_url("postgresql://tune:hunter2@db:5432/jobs") == "postgresql://tune:***@db:5432/jobs"
    assert safe_database_url("sqlite:////srv/tunesmith.db") == "sqlite:////srv/tunesmith.db"


def test_serve_refuses_an_unknown_log_level():
    from click.testing import CliRunner

    from tunesmith.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--log-level", "loud"])
    assert result.exit_code == 2 and "'loud' is not one of 'debug', 'info', 'warning', 'error'" in result.output


def test_serve_logs_requests_and_a_job_from_created_to_completed(tmp_path, tiny_model):
    write_jsonl(tmp_path / "t.jsonl", arithmetic(40))
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n')
    (tmp_path / "home").mkdir()
    server = Server(tmp_path / "home", tmp_path, tmp_path / "models.toml", options=["--log-level", "info"]).start()
    try:
        client = server.client()
        arn = create(client, tmp_path, "logged")
        job = wait_for(client, arn, {"Completed", "Failed"})
        assert job["status"] == "Completed", job.get("failureMessage")
        metrics = scrape(server.url)
        deadline = time.monotonic() + 30  # the supervisor logs the outcome once it reaps the worker (polled every 0.5 s)
        while "job logged completed" not in (tmp_path / "server.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.kill()
    log = (tmp_path / "server.log").read_text()
    assert re.search(r"INFO tunesmith.service: tunesmith serve on http://127\.0\.0\.1:\d+: home .*, database sqlite:///", log)
    assert re.search(r"INFO tunesmith.access: POST /model-customization-jobs 201 \d+\.\dms 127\.0\.0\.1:\d+", log)
    for pattern in (r"job logged created: ", r"job logged started: worker pid \d+ on cpu", r"job logged completed: model arn:aws:bedrock:"):
        assert re.search(r"INFO tunesmith.service.jobs: " + pattern, log), pattern
    job_id = arn.rsplit("/", 1)[1]
    worker_log = (tmp_path / "home" / "jobs" / f"{job_id}.log").read_text()
    assert re.search(rf"job logged \({job_id}\) started: attempt 1", worker_log) and f"job {job_id} completed" in worker_log
    assert metrics[("tunesmith_jobs", (("status", "Completed"),))] == 1


# -- inference: generated tokens and model loads ------------------------------------------------------
def test_generated_tokens_add_up_the_usage_of_every_api_and_a_model_loads_once(tmp_path, tiny_model):
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n')
    messages = [{"role": "user", "content": [{"text": "What is 2 plus 2?"}]}]
    config = {"maxTokens": 6, "temperature": 0}
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        runtime = server.client("bedrock-runtime")
        before = scrape(server.url)
        outputs = [runtime.converse(modelId="micro", messages=messages, inferenceConfig=config)["usage"]["outputTokens"]]
        first = scrape(server.url)
        events = list(runtime.converse_stream(modelId="micro", messages=messages, inferenceConfig=config)["stream"])
        outputs.append(events[-1]["metadata"]["usage"]["outputTokens"])
        chat = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0).chat.completions.create(
            model="micro", messages=[{"role": "user", "content": "What is 2 plus 2?"}], max_tokens=6, temperature=0)
        outputs.append(chat.usage.completion_tokens)
        after = scrape(server.url)
    ok, error = (*BASE, ("outcome", "ok")), (*BASE, ("outcome", "error"))
    assert before[(TOKENS, BASE)] == 0 and before[(LOADS, ok)] == 0 and before[(f"{LOAD_TIME}_count", BASE)] == 0
    assert first[(TOKENS, BASE)] == outputs[0] > 0
    assert first[(LOADS, ok)] == 1 and first[(f"{LOAD_TIME}_count", BASE)] == 1 and first[(f"{LOAD_TIME}_sum", BASE)] > 0
    assert after[(TOKENS, BASE)] == sum(outputs)  # each answer once, streamed or not
    assert after[(LOADS, ok)] == 1 and after[(LOADS, error)] == 0  # the second and third calls found it cached
    assert after[(f"{LOAD_TIME}_count", BASE)] == 1 and after[(f"{LOAD_TIME}_sum", BASE)] == first[(f"{LOAD_TIME}_sum", BASE)]
    assert after[(TOKENS, CUSTOM)] == 0


def test_a_model_that_fails_to_load_counts_as_an_error_and_is_not_timed(api):
    server, folder = api
    with pytest.raises(ValidationException, match="unknown model"):
        server.app.state.models.get("arn:aws:bedrock:us-east-1:123456789012:custom-model/gone", str(folder / "gone"))
    metrics = scrape(server.url)
    assert metrics[(LOADS, (*CUSTOM, ("outcome", "error")))] == 1 and metrics[(LOADS, (*CUSTOM, ("outcome", "ok")))] == 0
    assert metrics[(f"{LOAD_TIME}_count", CUSTOM)] == 0
