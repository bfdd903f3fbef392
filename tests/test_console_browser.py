"""The web console in a real browser against a real ``tunesmith serve`` (workers and all):
log in, create a job through the form with the advisor's values and check the steps the form
promised against the job's plan, watch it train to Completed with the loss chart drawn (and a
one-step job's chart, on whole-step ticks), deploy its model, chat with the model and with the
deployment in the playground, delete the deployment, a model and a finished job through their
confirmation pages, and check that no request of any page failed (the icon included).

Needs Debian's ``chromium`` (``apt-get install -y chromium``; .ci/run installs it) driven
by Playwright, which launches it from ``/usr/bin/chromium`` (Playwright's own browser
download does not work offline). Screenshots go to ``$TUNESMITH_ARTIFACTS`` (default: the
test's tmp folder); docs/console.png in the README is one of them.
"""

import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import arithmetic, write_jsonl
from service_harness import Server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="no chromium: apt-get install -y chromium (Debian's package; .ci/run installs it)"),
    pytest.mark.browser,
]
KEY, SECRET = "AKIDBROWSER", "browser-secret"
ROLE = "arn:aws:iam::123456789012:role/tunesmith"


@pytest.fixture
def world(tmp_path, tiny_model):
    write_jsonl(tmp_path / "train.jsonl", arithmetic(40))
    write_jsonl(tmp_path / "valid.jsonl", arithmetic(8, start=100))
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n')
    (tmp_path / "home").mkdir()
    return tmp_path


@pytest.fixture
def artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("TUNESMITH_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1360, "height": 1000})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def wait_done(page, server, job: str) -> None:
    """Open a job's page and wait until it has Completed and its chart has its last data."""
    page.goto(f"{server.url}/console/jobs/{job}")
    page.wait_for_function("document.querySelector('#job-status').textContent === 'Completed'", timeout=180_000)
    page.wait_for_function("document.querySelector('#loss-chart').dataset.done === 'true'", timeout=30_000)


def delete_through_its_page(page, link: str, expected_url: str) -> None:
    """Follow a Delete link, check the page asks first (nothing deleted yet), then confirm."""
    page.click(link)
    page.wait_for_selector("#confirm-delete")
    assert page.locator("#delete-consequences li").count() >= 2
    page.click("#confirm-delete")
    page.wait_for_url(expected_url)


def test_console_end_to_end(world, artifacts, page):
    server = Server(world / "home", world, world / "models.toml", options=["--credentials", f"{KEY}:{SECRET}"]).start()
    started = time.monotonic()
    failed: list[str] = []  # every answer of 400 or more the page got, favicon included
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.request.method} {r.url}"))
    try:
        # A one-step job (16 records, batch 16, 1 epoch), through boto3: it trains while the form is filled in.
        write_jsonl(world / "one.jsonl", arithmetic(16, start=200))
        server.client(key=KEY, secret=SECRET).create_model_customization_job(
            jobName="one-step", customModelName="one-step-model", roleArn=ROLE, baseModelIdentifier="micro",
            trainingDataConfig={"s3Uri": str(world / "one.jsonl")}, outputDataConfig={"s3Uri": str(world / "out-one")},
            validationDataConfig={"validators": [{"s3Uri": str(world / "valid.jsonl")}]},
            hyperParameters={"epochCount": "1", "learningRateWarmupSteps": "0"})

        # Every page asks for the login first.
        page.goto(server.url + "/console/new-job")
        assert "/console/login" in page.url
        page.fill("input[name=access_key]", KEY)
        page.fill("input[name=secret]", SECRET)
        page.click("button[type=submit]")
        page.wait_for_url("**/console/new-job")

        # The form: the advisor answers as soon as the data path is in.
        page.fill("#job-name", "browser-job")
        page.fill("#model-name", "browser-model")
        page.fill("#training-data", str(world / "train.jsonl"))
        page.fill("#validation-data", str(world / "valid.jsonl"))
        page.fill("#output", str(world / "out"))
        page.dispatch_event("#validation-data", "change")
        page.wait_for_selector("#recommendation")
        page.wait_for_function("document.querySelector('#advice').textContent.includes('8 validation record(s)')")  # not the answer for the training path alone
        assert "40 training record(s), 8 validation record(s): valid." in page.inner_text("#advice")
        page.click("#use-advice")
        assert page.input_value("#hp-learningRate") == "0.0001"
        assert int(page.input_value("#duplication-factor")) > 1  # the advised duplication, which the job now applies
        page.fill("#hp-epochCount", "2")  # fewer epochs and less duplication than advised: a shorter test
        page.fill("#hp-learningRateWarmupSteps", "1")
        page.fill("#duplication-factor", "2")
        page.dispatch_event("#duplication-factor", "change")
        page.wait_for_function("(({epochs, duplication, warmup}) => epochs === '2' && duplication === '2' && warmup === '1')"
                               "((document.querySelector('#your-values') || {}).dataset || {})")  # the panel for these values
        planned = int(page.get_attribute("#your-steps", "data-steps"))
        assert planned == 10  # ceil(40 x 2 / 16) x 2 epochs
        page.screenshot(path=str(artifacts / "console-new-job.png"), full_page=True)
        page.click("#create-job")

        # The job page: status, then the chart fills in and the job completes, on the steps the panel said.
        page.wait_for_url("**/console/jobs/browser-job")
        wait_done(page, server, "browser-job")
        chart = page.locator("#loss-chart")
        assert int(chart.get_attribute("data-points")) >= planned + 2  # every training step, 2 validations
        assert chart.locator("canvas").count() == 1
        assert all(tick.isdigit() for tick in chart.get_attribute("data-ticks").split(",")), chart.get_attribute("data-ticks")
        plan = dict(zip(page.locator("#job-plan dt").all_inner_texts(), page.locator("#job-plan dd").all_inner_texts()))
        assert int(plan["totalSteps"]) == planned
        page.wait_for_selector("#job-events tbody tr >> text=end")
        hyperparameters = page.inner_text("#hyperparameters")
        assert "Epochs epochCount\t2\t2" in hyperparameters
        page.screenshot(path=str(artifacts / "console-job.png"))  # the README's docs/console.png
        page.screenshot(path=str(artifacts / "console-job-full.png"), full_page=True)
        page.click("#delete-job")  # its model still exists: the page says so and offers no button
        assert "delete the model first" in page.inner_text("#delete-blocked") and page.locator("#confirm-delete").count() == 0

        # A one-step curve: its step is 1 on an axis with whole steps only (uPlot alone put it among 0.2-wide ticks).
        wait_done(page, server, "one-step")
        assert page.get_attribute("#loss-chart", "data-ticks") == "1"
        assert page.get_attribute("#loss-chart", "data-points") == "2"  # its training loss and its validation loss
        page.screenshot(path=str(artifacts / "console-one-step.png"))

        page.goto(server.url + "/console/jobs")
        assert page.get_attribute("tr[data-job=browser-job]", "data-status") == "Completed"

        # A deployment, made in the console.
        page.goto(server.url + "/console/models")
        assert "browser-model" in page.inner_text("#custom-models")
        page.click("tr[data-model=browser-model] >> text=Deploy")
        assert page.input_value("#deployment-model") == "browser-model"
        page.fill("#deployment-name", "browser-deployment")
        page.click("#create-deployment")
        page.wait_for_url("**/console/models?created=browser-deployment")
        assert "browser-model" in page.inner_text("tr[data-deployment=browser-deployment]")
        page.screenshot(path=str(artifacts / "console-models.png"), full_page=True)

        # The playground: each answer says which model gave it; another model starts a new conversation.
        page.goto(server.url + "/console/playground?model=browser-model")
        page.fill("#chat-max-tokens", "12")
        page.fill("#chat-message", "What is 3 plus 3?")
        page.click("#chat-send")
        page.wait_for_selector(".turn.assistant[data-state=done]", timeout=60_000)
        answer = page.inner_text(".turn.assistant .text")
        assert answer.strip(), "the model streamed no text"
        assert page.inner_text(".turn.assistant .who") == "browser-model"
        assert "tokens, stopped:" in page.inner_text("#chat-status")
        page.screenshot(path=str(artifacts / "console-playground.png"), full_page=True)
        page.select_option("#chat-model", "browser-deployment")
        assert page.locator("#transcript .turn").count() == 0
        assert page.inner_text("#chat-status") == "New conversation with browser-deployment."
        page.fill("#chat-message", "What is 4 plus 4?")
        page.click("#chat-send")
        page.wait_for_selector(".turn.assistant[data-state=done]", timeout=60_000)
        assert page.locator("#transcript .turn").count() == 2  # the first model's turns are not sent again
        assert page.inner_text(".turn.assistant .who") == "browser-deployment"

        # Deleting: a deployed model is refused; the deployment goes, then a model, then its finished job.
        page.goto(server.url + "/console/models")
        page.click("tr[data-model=browser-model] >> text=Delete…")
        assert "deployed as browser-deployment" in page.inner_text("#delete-blocked")
        page.screenshot(path=str(artifacts / "console-delete-refused.png"))
        page.goto(server.url + "/console/models")
        delete_through_its_page(page, "tr[data-deployment=browser-deployment] >> text=Delete…",
                                "**/console/models?deleted=browser-deployment")
        assert page.locator("tr[data-deployment]").count() == 0
        delete_through_its_page(page, "tr[data-model=one-step-model] >> text=Delete…", "**/console/models?deleted=one-step-model")
        assert page.locator("tr[data-model=one-step-model]").count() == 0
        page.goto(server.url + "/console/jobs/one-step")
        delete_through_its_page(page, "#delete-job", "**/console/jobs?deleted=one-step")
        assert page.locator("tr[data-job=one-step]").count() == 0 and page.locator("tr[data-job=browser-job]").count() == 1

        # The icon: linked from every page and served at /favicon.ico, fetched by the page itself (headless Chromium
        # asks for no icon on its own) so that it is in the page's network log; no request of any page failed.
        icons = page.evaluate("""() => Promise.all([...document.querySelectorAll('link[rel=icon]')].map(l => l.href)
            .concat(['/favicon.ico']).map(href => fetch(href).then(r => [href, r.status, r.headers.get('content-type')])))""")
        assert [(status, kind) for _, status, kind in icons] == [(200, "image/svg+xml"), (200, "image/x-icon"), (200, "image/x-icon")]
        assert failed == []
    finally:
        server.kill()
    print(f"console browser test: {time.monotonic() - started:.1f} s against the server")
