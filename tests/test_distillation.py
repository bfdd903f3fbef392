"""Distillation: resumable synthesis, rejection reasons, remote teachers, the student run."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from conftest import arithmetic, conversation, write_jsonl
from tunesmith.cli import cli
from tunesmith.distillation.distill import DistillationError, DistillConfig, run_distillation
from tunesmith.distillation.synthesis import ANSWERS, REJECTED, SYNTHETIC, synthesize
from tunesmith.distillation.teachers import BedrockTeacher, RemoteError, with_retries
from tunesmith.evaluation.generation import Completion
from tunesmith.hyperparameters import Hyperparameters


def answer_for(prompt: str) -> Completion:
    """A teacher good at the task: n plus n -> 2n. Some prompts trigger each rejection."""
    if "refuse" in prompt:
        return Completion("I'm sorry, I can't help with that.", 5, 8, "end_turn")
    if "blank" in prompt:
        return Completion("", 5, 1, "end_turn")
    if "ramble" in prompt:
        return Completion("and so on " * 10, 5, 16, "max_tokens")
    n = int(re.search(r"(\d+)", prompt).group(1))
    return Completion(f"{n} plus {n} is {2 * n}.", 5, 6, "end_turn")


class CodeTeacher:
    name = "code"

    def __init__(self, fail_after_calls=None):
        self.calls, self.prompts, self.fail_after_calls = 0, [], fail_after_calls

    def answer(self, chats, max_tokens, on_done=None):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise RuntimeError("teacher crashed")
        self.calls += 1
        self.prompts += [c[-1]["content"] for c in chats]
        return [answer_for(c[-1]["content"]) for c in chats]


def prompts_file(path, n=40, extras=True):
    records = [conversation(f"What is {i} plus {i}?") for i in range(n)]
    if extras:
        records += [conversation("Please refuse this."), conversation("Say blank."), conversation("ramble 3 on"),
                    conversation("What is 0 plus 0?")]  # a duplicate prompt
    records += arithmetic(5, start=500)  # labelled examples
    return write_jsonl(path, records)


def test_synthesis_sorts_answers_and_keeps_labels(tmp_path):
    data = prompts_file(tmp_path / "p.jsonl")
    report = synthesize(data, CodeTeacher(), tmp_path / "s", batch_size=16)
    assert (report.prompts, report.labelled, report.accepted) == (44, 5, 40)
    assert dict(report.rejected) == {"refused": 1, "empty answer": 1, "cut off at the maximum response length": 1, "duplicate prompt": 1}
    assert report.agreement == {"exactMatch": 1.0, "rougeL": 1.0, "records": 5}
    lines = (tmp_path / "s" / SYNTHETIC).read_text().splitlines()
    assert len(lines) == 45
    first = json.loads(lines[0])
    assert first["messages"][-1] == {"role": "assistant", "content": [{"text": "0 plus 0 is 0."}]}
    rejected = [json.loads(line) for line in (tmp_path / "s" / REJECTED).read_text().splitlines()]
    assert {r["reason"] for r in rejected} == set(report.rejected)
    assert all("line" in r and "prompt" in r for r in rejected)


def test_interrupted_synthesis_does_not_redo_answered_prompts(tmp_path):
    data = prompts_file(tmp_path / "p.jsonl", extras=False)
    crashing = CodeTeacher(fail_after_calls=2)
    with pytest.raises(RuntimeError, match="teacher crashed"):
        synthesize(data, crashing, tmp_path / "s", batch_size=10)
    assert len((tmp_path / "s" / ANSWERS).read_text().splitlines()) == 20
    with (tmp_path / "s" / ANSWERS).open("a") as out:
        out.write('{"index": 99, "te')  # a torn line from the crash
    again = CodeTeacher()
    report = synthesize(data, again, tmp_path / "s", batch_size=10)
    assert report.reused == 20 and report.answered_now == 25
    assert len(again.prompts) == 25 and not set(again.prompts) & set(crashing.prompts)
    assert report.accepted == 40


def test_stop_during_synthesis(tmp_path):
    data = prompts_file(tmp_path / "p.jsonl", extras=False)
    calls = iter(range(100))
    with pytest.raises(InterruptedError, match="run again to continue"):
        synthesize(data, CodeTeacher(), tmp_path / "s", batch_size=10, stop=lambda: next(calls) >= 1)
    assert len((tmp_path / "s" / ANSWERS).read_text().splitlines()) == 10


def test_distillation_trains_the_student(tmp_path, tiny_model):
    data = prompts_file(tmp_path / "p.jsonl")
    config = DistillConfig(data=data, output=tmp_path / "out", student=str(tiny_model), precision="fp32",
                           hyperparameters=Hyperparameters(1, 1e-4, 0))
    report = run_distillation(config, CodeTeacher())
    assert report["synthesis"]["trainingRecords"] == 45
    assert report["training"]["steps"] == 3  # 45 records, tiny-model batch 16
    assert (tmp_path / "out" / "student" / "model" / "model.safetensors").exists()
    assert json.loads((tmp_path / "out" / "distillation_report.json").read_text())["teacher"] == "code"


def test_a_stopped_student_is_reported_as_stopped(tmp_path, tiny_model):
    data = prompts_file(tmp_path / "p.jsonl")
    config = DistillConfig(data=data, output=tmp_path / "out", student=str(tiny_model), precision="fp32",
                           hyperparameters=Hyperparameters(1, 1e-4, 0))
    done = []
    report = run_distillation(config, CodeTeacher(), on_step=lambda info: done.append(info.step), stop=lambda: bool(done))
    assert report["stopped"] and (report["steps"], report["totalSteps"]) == (1, 3)
    assert report["synthesis"]["accepted"] == 40 and "training" not in report
    assert not (tmp_path / "out" / "distillation_report.json").exists()
    assert (tmp_path / "out" / "student" / "checkpoints" / "step-000001").is_dir()


def test_too_few_usable_answers_is_a_clear_error(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "p.jsonl", [conversation(f"Please refuse {i}") for i in range(10)])
    with pytest.raises(DistillationError, match=r"only 0 usable training records .* rejected: \{'refused': 10\}"):
        run_distillation(DistillConfig(data=data, output=tmp_path / "out", student=str(tiny_model)), CodeTeacher())


def test_retries_back_off_then_give_up():
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise RemoteError("throttled")
        return Completion("ok", 1, 1, "end_turn")

    assert with_retries(flaky, base_delay=0.001).text == "ok" and len(attempts) == 3
    fatal = RemoteError("bad request")
    fatal.retryable = False
    with pytest.raises(RemoteError, match="bad request"):
        with_retries(lambda: (_ for _ in ()).throw(fatal), base_delay=0.001)


@pytest.fixture
def openai_server():
    """A tiny OpenAI-compatible chat-completions server: the first request is throttled (429)."""
    state = {"requests": 0}
    lock = threading.Lock()  # the server answers on many threads: an unguarded += loses counts under load

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            with lock:
                state["requests"] += 1
                first = state["requests"] == 1
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if first:
                self.send_response(429)
                self.end_headers()
                return
            completion = answer_for(body["messages"][-1]["content"])
            reply = {"choices": [{"message": {"role": "assistant", "content": completion.text},
                                  "finish_reason": "length" if completion.stop_reason == "max_tokens" else "stop"}],
                     "usage": {"prompt_tokens": 5, "completion_tokens": completion.output_tokens}}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions", state
    server.shutdown()


def test_cli_with_an_openai_compatible_teacher(in_tmp, tiny_model, openai_server):
    url, state = openai_server
    prompts_file(in_tmp / "p.jsonl")
    result = CliRunner().invoke(cli, [
        "distill", "p.jsonl", "--student", str(tiny_model), "--teacher", "big-model", "--teacher-endpoint", url,
        "--teacher-api", "openai", "--output", "out", "--epochs", "1", "--precision", "fp32", "--json",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["synthesis"]["accepted"] == 40 and report["synthesis"]["rejected"]["refused"] == 1
    assert state["requests"] == 48 + 1  # every unique prompt once (40 + 3 + 5 labelled), plus the throttled retry


def test_cli_refuses_bad_prompts_before_loading_a_teacher(in_tmp):
    write_jsonl(in_tmp / "p.jsonl", [conversation("q")] * 7 + ['{"messages": 5}'])
    result = CliRunner().invoke(cli, ["distill", "p.jsonl", "--teacher", "pro", "--output", "out"])
    assert result.exit_code == 1 and "p.jsonl:8: messages: expected an array of messages, got a number" in result.output


def test_bedrock_teacher_through_tunesmiths_own_server(tmp_path, tiny_model):
    from service_harness import ApiOnlyServer

    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\n')
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        teacher = BedrockTeacher("amazon.nova-micro-v1:0", server.url, concurrency=2)
        answers = teacher.answer([[{"role": "user", "content": "What is 1 plus 1?"}]] * 3, max_tokens=4)
    assert len(answers) == 3 and all(a.stop_reason in ("end_turn", "max_tokens") for a in answers)
