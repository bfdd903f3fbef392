"""The web console in-process (FastAPI's TestClient, no workers): every page's HTML, the
create form through the API's own path, the advisor inline, live job fragments, the login.
The browser drives the same pages end to end in test_console_browser.py."""

import json
import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from conftest import arithmetic, write_jsonl
from tunesmith.advisor import recommend
from tunesmith.api.errors import describe
from tunesmith.api.protocol import ConverseRequest
from tunesmith.console import login, routes
from tunesmith.hyperparameters import TABLE, Hyperparameters, format_value
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.store import CustomModel, Deployment, utcnow
from tunesmith.server import ServiceSettings, create_app
from tunesmith.tiers import MICRO

STATIC = Path(__file__).parents[1] / "src" / "tunesmith" / "console" / "static"


def make_client(tmp_path, credentials=None) -> TestClient:
    settings = ServiceSettings(home=tmp_path / "home", allowed_roots=[str(tmp_path)], run_workers=False, devices=["cpu"],
                               device="cpu", credentials=credentials or {})
    return TestClient(create_app(settings))


@pytest.fixture
def client(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", arithmetic(40))
    write_jsonl(tmp_path / "valid.jsonl", arithmetic(8, start=100))
    return make_client(tmp_path)


def form(tmp_path, name="console-job", **changes) -> dict:
    values = {"job_name": name, "model_name": f"{name}-model", "base_model": "micro", "customization_type": "FINE_TUNING",
              "training": str(tmp_path / "train.jsonl"), "validation": str(tmp_path / "valid.jsonl"),
              "output": str(tmp_path / "out"), "epochCount": "2", "learningRate": "", "learningRateWarmupSteps": ""}
    values.update(changes)
    return values


def store_of(client):
    return client.app.state.store


def test_pages_are_html_and_load_only_local_assets(client):
    for path in ("/console", "/console/jobs", "/console/new-job", "/console/models", "/console/playground"):
        answer = client.get(path)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html"), path
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", answer.text), f"{path} loads something from another host"
    for asset in ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css", "console.js", "console.css", "favicon.svg", "favicon.ico"):
        assert client.get(f"/console/static/{asset}").status_code == 200


def test_every_vendored_file_is_accounted_for_in_the_notice():
    notice = (STATIC / "NOTICE.md").read_text()
    for path in STATIC.iterdir():
        if path.name != "NOTICE.md":
            assert f"`{path.name}`" in notice or path.name in notice, path.name
    assert "2.0.10" in notice and "1.6.31" in notice


def test_form_shows_the_tables_bounds(client):
    page = client.get("/console/new-job").text
    for spec in TABLE:
        field = re.search(rf'<input name="{spec.key}"[^>]*>', page).group(0)
        assert f'min="{format_value(spec.minimum)}"' in field and f'max="{format_value(spec.maximum)}"' in field
        assert f'placeholder="{format_value(spec.default)}"' in field
        assert f"{format_value(spec.minimum)} to {format_value(spec.maximum)}, default {format_value(spec.default)}" in page


def test_advice_for_the_chosen_data(client, tmp_path):
    answer = client.post("/console/new-job/advice", data=form(tmp_path, epochCount=""), headers={"HX-Request": "true"})
    assert answer.status_code == 200
    assert "40 training record(s), 8 validation record(s): valid." in answer.text
    advised = recommend(40, MICRO.custom("micro", MICRO.effective_batch_size, MICRO.learning_rate), total_records=48)
    for key, value in advised.hyperparameters.to_wire().items():
        assert re.search(rf'data-key="{key}">{re.escape(value)}<', answer.text), key
    fill = re.search(r'data-fill="([^"]*)"', answer.text).group(1)
    assert json.loads(fill.replace("&#34;", '"')) == advised.hyperparameters.to_wire()


def _panel_steps(client, tmp_path, **changes) -> int:
    answer = client.post("/console/new-job/advice", data=form(tmp_path, validation="", **changes))
    assert answer.status_code == 200, answer.text
    return int(re.search(r'id="your-steps" data-steps="(\d+)"', answer.text).group(1))


def test_your_values_count_steps_as_the_job_will(client, tmp_path):
    """32 records on micro (batch 64): the advice duplicates 10x, a job only as its duplication field says."""
    write_jsonl(tmp_path / "train.jsonl", arithmetic(32))
    assert recommend(32, MICRO).plan.duplication_factor == 10
    assert [_panel_steps(client, tmp_path, epochCount=e) for e in ("1", "2", "5")] == [1, 1 * 2, 1 * 5]  # ceil(32 / 64) per epoch
    assert [_panel_steps(client, tmp_path, epochCount=e, duplication="10") for e in ("1", "2", "5")] == [5, 10, 25]
    assert _panel_steps(client, tmp_path, epochCount="") == 2  # empty: the guide's default (2 epochs), as the job's
    answer = client.post("/console/new-job/advice", data=form(tmp_path, duplication="0"))
    assert "tunesmithConfig.duplicationFactor 0 is out of range: must be at least 1" in answer.text and "your-steps" not in answer.text


def test_your_values_equal_the_total_steps_of_the_job_that_runs(tmp_path, tiny_model):
    """The panel beside the form, then the job made by that form run by its worker: the same totalSteps."""
    from tunesmith.jobs.worker import JobWorker

    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n')
    write_jsonl(tmp_path / "train.jsonl", arithmetic(20))
    client = make_client(tmp_path)
    values = form(tmp_path, name="planned", validation="", epochCount="1", learningRateWarmupSteps="1", duplication="2")
    panel = _panel_steps(client, tmp_path, **{k: v for k, v in values.items() if k != "validation"})
    assert panel == 3  # ceil(20 x 2 / 16) x 1 epoch
    assert client.post("/console/new-job", data=values, follow_redirects=False).status_code == 303
    store = store_of(client)
    with store.session() as session:
        job = store.job(session, "planned")
        assert job.spec.duplication == 2
    JobWorker(store, client.app.state.settings.home, job.id, device="cpu", allowed_roots=[str(tmp_path)]).execute()
    with store.session() as session:
        job = store.job(session, "planned")
        assert job.status == "Completed", job.failure_message
        assert job.details["plan"]["totalSteps"] == panel
    assert f"<dt>totalSteps</dt><dd>{panel}</dd>" in client.get("/console/jobs/planned").text


def test_advice_warns_about_the_values_typed(client, tmp_path):
    answer = client.post("/console/new-job/advice", data=form(tmp_path, learningRateWarmupSteps="20"))
    assert "With your values" in answer.text and "warmup (20 steps) is not shorter than training" in answer.text


def test_advice_lists_data_errors_with_file_and_line(client, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [*arithmetic(3), "{not json", *arithmetic(3, start=10)])
    answer = client.post("/console/new-job/advice", data=form(tmp_path, training=str(bad), validation=""))
    assert f"{bad}:4: " in answer.text and 'id="data-errors"' in answer.text


def test_advice_reads_nothing_outside_the_allowed_folders(client, tmp_path):
    answer = client.post("/console/new-job/advice", data=form(tmp_path, training="/etc/passwd", validation=""))
    assert "is outside the folders this server may use" in answer.text and "root:" not in answer.text
    answer = client.post("/console/new-job/advice", data=form(tmp_path, training="s3://bucket/train.jsonl", validation=""))
    assert "on S3: the job validates it when it starts" in answer.text


def test_create_through_the_form_makes_the_jobs_api_job(client, tmp_path):
    answer = client.post("/console/new-job", data=form(tmp_path), follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/jobs/console-job"
    with store_of(client).session() as session:
        spec = store_of(client).job(session, "console-job").spec
    assert spec.hyperparameters_sent == {"epochCount": "2"}
    assert spec.hyperparameters == Hyperparameters(epoch_count=2)  # parsed once, the others defaulted
    assert spec.validation_uris == [str(tmp_path / "valid.jsonl")]
    page = client.get("/console/jobs/console-job").text
    rows = re.findall(r"<tr><td>([^<]+) <code>(\w+)</code></td><td>([^<]*)</td><td>([^<]*)</td></tr>", page)
    assert rows == [("Epochs", "epochCount", "2", "2"), ("Learning rate", "learningRate", "(default)", "1e-05"),
                    ("Learning rate warmup steps", "learningRateWarmupSteps", "(default)", "10")]
    listed = client.get("/console/job-rows").text
    assert 'data-job="console-job" data-status="InProgress"' in listed and "Queued" in listed


def test_form_refuses_with_the_apis_messages(client, tmp_path):
    answer = client.post("/console/new-job", data=form(tmp_path, learningRate="0.5"))
    assert answer.status_code == 400
    assert "hyperParameters: learningRate=0.5 is out of range: must be between 1e-06 and 0.0001" in answer.text
    answer = client.post("/console/new-job", data=form(tmp_path, job_name="bad name"))
    assert answer.status_code == 400 and "jobName &#39;bad name&#39; does not match the pattern" in answer.text
    assert client.post("/console/new-job", data=form(tmp_path), follow_redirects=False).status_code == 303
    answer = client.post("/console/new-job", data=form(tmp_path, model_name="other"))
    assert answer.status_code == 400 and "The provided job name is currently in use." in answer.text
    answer = client.post("/console/new-job", data=form(tmp_path, name="outside", training="/etc/passwd", validation=""))
    assert answer.status_code == 400 and "trainingDataConfig.s3Uri: &#39;/etc/passwd&#39; is outside the folders" in answer.text


def test_form_refuses_bad_data_before_creating(client, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [*arithmetic(12), '{"messages": []}'])
    answer = client.post("/console/new-job", data=form(tmp_path, training=str(bad), validation=""))
    assert answer.status_code == 400 and "Fix the data first:" in answer.text and f"{bad}:13: " in answer.text
    with store_of(client).session() as session:
        assert store_of(client).job(session, "console-job") is None


def test_live_job_fragments_read_the_events(client, tmp_path):
    client.post("/console/new-job", data=form(tmp_path))
    store = store_of(client)
    with store.session() as session:
        job = store.job(session, "console-job")
        job.details = {"plan": {"totalSteps": 8}, "warnings": ["warmup takes 50% of training"]}
        session.commit()
        events = JobFolder(client.app.state.settings.home, job.id).events
    events.parent.mkdir(parents=True)
    now = time.time()
    lines = [{"event": "start", "time": now, "total_steps": 8},
             *({"event": "step", "time": now, "step": s, "epoch": 0, "loss": 3.0 - s / 10, "eta_s": 70 - 10 * s} for s in (1, 2, 3)),
             {"event": "validation", "time": now, "step": 3, "epoch": 0, "loss": 2.5}, {"event": "step", "time": now, "step": 3, "loss": 2.6, "eta_s": 40}]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"event": "step", "step": 4')  # the last line is being written
    losses = client.get("/console/jobs/console-job/losses").json()
    assert losses == {"steps": [1, 2, 3], "training": [2.9, 2.8, 2.6], "validation": [None, None, 2.5], "status": "InProgress",
                      "active": True}
    summary = client.get("/console/jobs/console-job/summary", headers={"HX-Request": "true"}).text
    assert "step 3 of 8" in summary and "40 s" in summary and 'hx-trigger="every 2s"' in summary
    assert "warmup takes 50% of training" in client.get("/console/jobs/console-job").text
    outputs = client.get("/console/jobs/console-job/outputs").text
    assert "warmup takes 50% of training" in outputs and "<dt>totalSteps</dt><dd>8</dd>" in outputs and "None yet." in outputs
    listed = client.get("/console/job-rows").text
    assert "3/8" in listed and "<td>40 s</td>" in listed
    recent = client.get("/console/jobs/console-job/events").text
    assert "6 event(s)" in recent and "validation" in recent and "loss=2.5" in recent


def test_stop_button_stops_through_the_api(client, tmp_path):
    client.post("/console/new-job", data=form(tmp_path))
    answer = client.post("/console/jobs/console-job/stop", headers={"HX-Request": "true"})
    assert answer.status_code == 200 and 'id="job-status">Stopped<' in answer.text and "Stop requested." in answer.text
    assert 'id="stop-job"' not in answer.text and "hx-trigger" not in answer.text
    again = client.post("/console/jobs/console-job/stop", headers={"HX-Request": "true"})
    assert "job console-job is Stopped; only an InProgress job can be stopped" in again.text


def test_models_and_deployments_are_listed(client):
    store = store_of(client)
    with store.session() as session:
        session.add(CustomModel(id="m1", arn="arn:model/m1", name="my-model", job_arn="arn:job/j1", job_name="j1",
                                base_model_arn="arn:fm/amazon.nova-micro-v1:0:128k", customization_type="FINE_TUNING",
                                status="Active", folder="/nowhere", details={}, created=utcnow()))
        session.add(Deployment(id="d1", arn="arn:deployment/d1", name="my-deployment", model_arn="arn:model/m1", status="Active",
                               created=utcnow(), modified=utcnow()))
        session.commit()
    page = client.get("/console/models").text
    assert "my-model" in page and "amazon.nova-micro-v1:0:128k" in page and "/console/playground?model=my-model" in page
    assert "my-deployment" in page
    playground = client.get("/console/playground?model=my-deployment").text
    assert '<option value="my-deployment" selected>' in playground and '<option value="micro" >' in playground
    assert '<option value="my-model" >' in playground


def _add_model(client, name="my-model", status="Active", folder=None) -> None:
    with store_of(client).session() as session:
        session.add(CustomModel(id=name[:12], arn=f"arn:model/{name}", name=name, job_arn="arn:job/j1", job_name="j1",
                                base_model_arn="arn:fm/amazon.nova-micro-v1:0:128k", customization_type="FINE_TUNING",
                                status=status, folder=folder, details={}, created=utcnow()))
        session.commit()


def test_deployments_are_created_and_deleted_in_the_console(client, tmp_path):
    folder = tmp_path / "result"
    (folder / "model").mkdir(parents=True)
    _add_model(client, folder=str(folder))
    _add_model(client, "failed-model", status="Failed")
    page = client.get("/console/models?deploy=my-model").text
    assert '<option value="my-model" selected>' in page and 'value="failed-model"' not in page  # only Active models deploy
    answer = client.post("/console/deployments", data={"name": "my-deployment", "model": "my-model", "description": "for the demo"},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/models?created=my-deployment"
    page = client.get(answer.headers["location"]).text
    assert "Deployment my-deployment created." in page and '<tr data-deployment="my-deployment">' in page and "for the demo" in page
    refused = client.post("/console/deployments", data={"name": "my-deployment", "model": "my-model"})
    assert refused.status_code == 400 and "The provided deployment name my-deployment is currently in use." in refused.text
    refused = client.post("/console/deployments", data={"name": "bad name", "model": "my-model"})
    assert refused.status_code == 400 and "modelDeploymentName &#39;bad name&#39;" in refused.text
    refused = client.post("/console/deployments", data={"name": "other", "model": "failed-model"})
    assert refused.status_code == 400 and "model failed-model is Failed; only an Active model can be deployed" in refused.text

    # A deployed model cannot be deleted: the page says which deployment to delete first, the post is refused, the API alike.
    confirm = client.get("/console/models/my-model/delete").text
    assert "model my-model is deployed as my-deployment: delete the deployment(s) first" in confirm and 'id="confirm-delete"' not in confirm
    refused = client.post("/console/models/my-model/delete")
    assert refused.status_code == 400 and "deployed as my-deployment" in refused.text and folder.is_dir()
    api = client.delete("/custom-models/my-model")
    assert api.status_code == 400 and api.json()["message"] == "model my-model is deployed as my-deployment: delete the deployment(s) first"

    confirm = client.get("/console/deployments/my-deployment/delete").text  # a GET only asks
    assert 'action="/console/deployments/my-deployment/delete"' in confirm and "Its model my-model stays." in confirm
    assert '<tr data-deployment="my-deployment">' in client.get("/console/models").text
    answer = client.post("/console/deployments/my-deployment/delete", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/models?deleted=my-deployment"
    assert "my-deployment" not in client.get("/console/models").text.replace("Deleted my-deployment.", "")

    confirm = client.get("/console/models/my-model/delete").text
    assert f"Its folder goes, with its weights, its checkpoints and the training events its job&#39;s page draws: {folder}." in confirm
    answer = client.post("/console/models/my-model/delete", follow_redirects=False)
    assert answer.status_code == 303 and not folder.exists()
    with store_of(client).session() as session:
        assert store_of(client).model(session, "my-model") is None
    assert client.post("/console/models/my-model/delete").status_code == 404


def test_jobs_are_deleted_once_ended_with_their_folder(client, tmp_path):
    client.post("/console/new-job", data=form(tmp_path))
    store, home = store_of(client), client.app.state.settings.home
    with store.session() as session:
        job = store.job(session, "console-job")
    folder = JobFolder(home, job.id)
    folder.events.parent.mkdir(parents=True)
    folder.events.write_text("")
    folder.log.write_text("log\n")
    (tmp_path / "out").mkdir()
    confirm = client.get("/console/jobs/console-job/delete").text
    assert "job console-job is InProgress: stop it first; only a job that has ended can be deleted" in confirm
    assert 'id="confirm-delete"' not in confirm
    refused = client.post("/console/jobs/console-job/delete")
    assert refused.status_code == 400 and folder.root.is_dir()
    assert 'id="delete-job"' not in client.get("/console/jobs/console-job").text

    client.post("/console/jobs/console-job/stop")
    assert 'id="delete-job" href="/console/jobs/console-job/delete"' in client.get("/console/jobs/console-job").text
    confirm = client.get("/console/jobs/console-job/delete").text
    assert f"{folder.root} (and its log, {folder.log})" in confirm and f"what it wrote to its output location stay: {tmp_path / 'out'}" in confirm
    answer = client.post("/console/jobs/console-job/delete", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/jobs?deleted=console-job"
    assert not folder.root.exists() and not folder.log.exists() and (tmp_path / "out").is_dir() and (tmp_path / "train.jsonl").is_file()
    assert "Deleted job console-job." in client.get("/console/jobs?deleted=console-job").text
    assert 'data-job="console-job"' not in client.get("/console/job-rows").text
    assert client.post("/console/new-job", data=form(tmp_path), follow_redirects=False).status_code == 303  # the name is free again


def test_a_completed_jobs_model_goes_before_the_job(client, tmp_path):
    client.post("/console/new-job", data=form(tmp_path))
    _add_model(client, "console-job-model")
    with store_of(client).session() as session:
        job = store_of(client).job(session, "console-job")
        job.status, job.output_model_arn = "Completed", "arn:model/console-job-model"
        session.commit()
    refused = client.post("/console/jobs/console-job/delete")
    assert refused.status_code == 400 and ("job console-job made the custom model console-job-model, whose weights are in the "
                                           "job&#39;s folder: delete the model first") in refused.text
    assert "/console/playground?model=console-job-model" in client.get("/console/jobs/console-job").text
    assert client.post("/console/models/console-job-model/delete", follow_redirects=False).status_code == 303
    page = client.get("/console/jobs/console-job").text
    assert '<dd id="job-model">console-job-model (deleted)</dd>' in page and "playground?model=console-job-model" not in page
    assert client.post("/console/jobs/console-job/delete", follow_redirects=False).status_code == 303


def test_the_icon_is_served_to_anyone(tmp_path):
    client = make_client(tmp_path, CREDENTIALS)  # the API wants SigV4, the console its login: the icon wants neither
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content == (STATIC / "favicon.ico").read_bytes() and icon.content[:4] == b"\x00\x00\x01\x00"
    page = client.get("/console/login").text
    assert '<link rel="icon" href="/console/static/favicon.svg" type="image/svg+xml">' in page and 'href="/favicon.ico"' in page


def test_playground_refuses_clearly(client):
    answer = client.post("/console/playground/stream", json={"modelId": "no-such-model", "messages": [{"role": "user", "content": [{"text": "hi"}]}]})
    assert answer.status_code == 404 and "no-such-model is not a base model, a custom model or a deployment" in answer.text
    answer = client.post("/console/playground/stream", json={"modelId": "micro", "messages": []})
    with pytest.raises(ValidationError) as refused:
        ConverseRequest.model_validate({"messages": []})
    assert answer.status_code == 400 and answer.text == describe(refused.value.errors()[0])  # the API's own words
    answer = client.post("/console/playground/stream", json={"modelId": "micro", "messages": [{"role": "assistant", "content": [{"text": "x"}]}]})
    assert answer.status_code == 400 and answer.text == "the last message must be from the user"
    answer = client.post("/console/playground/stream", content=b"{not json")
    assert answer.status_code == 400 and "not valid JSON" in answer.text


def test_playground_streams_a_models_answer(tmp_path, tiny_model):
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\n')
    client = make_client(tmp_path)
    request = {"modelId": "micro", "messages": [{"role": "user", "content": [{"text": "What is 2 plus 2?"}]}],
               "inferenceConfig": {"maxTokens": 8, "temperature": 0}}
    with client.stream("POST", "/console/playground/stream", json=request) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in answer.read().decode().split("\n\n") if f]
    kinds = [f.split("\n")[0] for f in frames]
    assert kinds[-1] == "event: done" and set(kinds[:-1]) <= {"event: delta"}
    done = json.loads(frames[-1].split("data: ")[1])
    assert done["outputTokens"] <= 8 and done["stopReason"] in ("end_turn", "max_tokens")


def test_bad_input_gives_error_pages_not_tracebacks(client):
    answer = client.get("/console/jobs/no-such-job")
    assert answer.status_code == 404 and "There is no job named &#39;no-such-job&#39;." in answer.text
    assert client.get("/console/jobs/no-such-job/losses").status_code == 404
    answer = client.get("/console/no/such/page")
    assert answer.status_code == 404 and "There is no console page at /console/no/such/page." in answer.text
    answer = client.post("/console/new-job", content=b"\xff\xfe=%%%", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 400 and "<li>jobName must be at least 1 character(s) long</li>" in answer.text
    answer = client.post("/console/new-job", content="&".join(f"f{i}=1" for i in range(200)),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 400 and "the form has more than 100 fields" in answer.text
    answer = client.post("/console/new-job/advice", data={"training": "train\x00.jsonl"})
    assert answer.status_code == 200 and ("The training data &#39;train\\x00.jsonl&#39; contains a control character (U+0000); "
                                          "control characters are refused.") in answer.text


# --- Login -------------------------------------------------------------------------------------
CREDENTIALS = {"AKIDCONSOLE": "s3cret"}


def console_routes():
    """Every console route with its path parameters filled in, and its methods."""
    for router in (login.router, *(module.router for module in routes.SECTIONS), routes.fallback):
        for route in router.routes:
            path = routes.PREFIX + re.sub(r"\{(\w+)(:path)?\}", "x", route.path)
            for method in sorted(route.methods - {"HEAD"}):
                yield method, path


def test_every_console_route_needs_the_login(tmp_path):
    client = make_client(tmp_path, CREDENTIALS)
    checked = 0
    for method, path in console_routes():
        answer = client.request(method, path, follow_redirects=False)
        if path.startswith(("/console/login", "/console/logout")):
            assert answer.status_code in (200, 303, 401)  # the form, a redirect, or "wrong secret"
            continue
        expected = 303 if method == "GET" else 401
        assert answer.status_code == expected, (method, path, answer.status_code)
        if expected == 303:
            assert answer.headers["location"].startswith("/console/login?next=")
        assert "console-job" not in answer.text and "<table" not in answer.text
        checked += 1
    assert checked >= 14
    fragment = client.get("/console/job-rows", headers={"HX-Request": "true"})
    assert fragment.status_code == 401 and fragment.headers["hx-redirect"] == "/console/login"
    assert client.get("/console/static/htmx.min.js").status_code == 200
    assert client.get("/model-customization-jobs").status_code == 403  # the API still wants SigV4


def test_login_sets_a_signed_cookie(tmp_path):
    client = make_client(tmp_path, CREDENTIALS)
    page = client.get("/console/login?next=/console/models")
    assert page.status_code == 200 and 'name="secret"' in page.text and 'value="/console/models"' in page.text
    wrong = client.post("/console/login", data={"access_key": "AKIDCONSOLE", "secret": "guess", "next": "/console/models"})
    assert wrong.status_code == 401 and "The access key or the secret is wrong." in wrong.text
    assert login.COOKIE not in client.cookies
    right = client.post("/console/login", data={"access_key": "AKIDCONSOLE", "secret": "s3cret", "next": "/console/models"},
                        follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "/console/models"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie and "s3cret" not in cookie
    assert client.get("/console/models").status_code == 200 and "AKIDCONSOLE" in client.get("/console/models").text
    client.post("/console/logout")
    assert client.get("/console/models", follow_redirects=False).status_code == 303


def test_login_goes_only_to_console_pages(tmp_path):
    client = make_client(tmp_path, CREDENTIALS)
    for target in ("https://elsewhere.example/", "//elsewhere.example/console", "/model-customization-jobs"):
        answer = client.post("/console/login", data={"access_key": "AKIDCONSOLE", "secret": "s3cret", "next": target},
                             follow_redirects=False)
        assert answer.headers["location"] == "/console", target


def test_session_cookie_is_checked():
    value = login.session_value("AKIDCONSOLE", "s3cret", issued=1_000_000)
    assert login.signed_in_key(value, CREDENTIALS, now=1_000_100) == "AKIDCONSOLE"
    assert login.signed_in_key(value, CREDENTIALS, now=1_000_000 + login.MAX_AGE + 1) is None  # expired
    assert login.signed_in_key(value, {"AKIDCONSOLE": "rotated"}, now=1_000_100) is None  # the secret changed
    assert login.signed_in_key(value.replace("1000000", "1000050"), CREDENTIALS, now=1_000_100) is None  # tampered
    assert login.signed_in_key("AKIDOTHER" + value[len("AKIDCONSOLE"):], CREDENTIALS, now=1_000_100) is None
    for junk in ("", "no-dots", "a.b.c", "AKIDCONSOLE.notanumber.ff"):
        assert login.signed_in_key(junk, CREDENTIALS) is None


def test_without_credentials_there_is_no_login(client):
    assert client.get("/console/login", follow_redirects=False).headers["location"] == "/console"
    assert "Log out" not in client.get("/console").text
