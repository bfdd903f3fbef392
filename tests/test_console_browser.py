"""The web console in a real browser against a real ``tunesmith serve`` (workers and all):
log in, create a job through the form with the advisor's values, watch it train to
Completed with the loss chart drawn, then chat with the model it made in the playground.

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


def test_console_end_to_end(world, artifacts, page):
    server = Server(world / "home", world, world / "models.toml", options=["--credentials", f"{KEY}:{SECRET}"]).start()
    started = time.monotonic()
    try:
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
        assert "40 training record(s), 8 validation record(s): valid." in page.inner_text("#advice")
        page.click("#use-advice")
        assert page.input_value("#hp-learningRate") == "0.0001"
        page.fill("#hp-epochCount", "2")  # fewer epochs than advised: a shorter test
        page.fill("#hp-learningRateWarmupSteps", "1")
        page.screenshot(path=str(artifacts / "console-new-job.png"), full_page=True)
        page.click("#create-job")

        # The job page: status, then the chart fills in and the job completes.
        page.wait_for_url("**/console/jobs/browser-job")
        page.wait_for_function("document.querySelector('#job-status').textContent === 'Completed'", timeout=180_000)
        page.wait_for_function("document.querySelector('#loss-chart').dataset.done === 'true'", timeout=30_000)
        chart = page.locator("#loss-chart")
        assert int(chart.get_attribute("data-points")) >= 6 + 2  # 6 training steps, 2 validations
        assert chart.locator("canvas").count() == 1
        page.wait_for_selector("#job-events tbody tr >> text=end")
        hyperparameters = page.inner_text("#hyperparameters")
        assert "Epochs epochCount\t2\t2" in hyperparameters
        page.screenshot(path=str(artifacts / "console-job.png"))  # the README's docs/console.png
        page.screenshot(path=str(artifacts / "console-job-full.png"), full_page=True)

        page.goto(server.url + "/console/jobs")
        assert page.get_attribute("tr[data-job=browser-job]", "data-status") == "Completed"
        page.goto(server.url + "/console/models")
        assert "browser-model" in page.inner_text("#custom-models")

        # The playground: the answer streams into the transcript.
        page.goto(server.url + "/console/playground?model=browser-model")
        page.fill("#chat-max-tokens", "12")
        page.fill("#chat-message", "What is 3 plus 3?")
        page.click("#chat-send")
        page.wait_for_selector(".turn.assistant[data-state=done]", timeout=60_000)
        answer = page.inner_text(".turn.assistant .text")
        assert answer.strip(), "the model streamed no text"
        assert "tokens, stopped:" in page.inner_text("#chat-status")
        page.screenshot(path=str(artifacts / "console-playground.png"), full_page=True)
    finally:
        server.kill()
    print(f"console browser test: {time.monotonic() - started:.1f} s against the server")
