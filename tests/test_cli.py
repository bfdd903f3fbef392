"""The command line, run in-process as a user would type it."""

import json
import shutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from conftest import FIXTURES, arithmetic, conversation, write_jsonl
from tunesmith.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def advise_json(*args):
    result = run("advise", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("model,warmup", [("micro", "5"), ("lite", "20"), ("pro", "10")])
def test_advise_3200(model, warmup):
    data = advise_json("--records", 3200, "--model", model)
    assert data["hyperParameters"]["learningRateWarmupSteps"] == warmup
    assert data["model"] == model


def test_advise_acceptance_cases():
    big = advise_json("--records", 20000, "--model", "micro")
    assert big["hyperParameters"]["learningRateWarmupSteps"] == "20"
    assert big["hyperParameters"]["epochCount"] == "1"
    assert "clamped" in big["reasons"]["learningRateWarmupSteps"]["reason"]
    assert advise_json("--records", 3000, "--model", "micro")["hyperParameters"]["epochCount"] == "2"
    small = advise_json("--records", 300, "--model", "micro")
    assert small["hyperParameters"]["epochCount"] == "5" and small["duplicationFactor"] > 1


def test_advise_explain_shows_the_guide_rule_beside_the_measured_deviation():
    result = run("advise", "--records", 1000, "--model", "micro", "--explain")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Under 1K samples, duplicate the data" in text and "up to 5K use 2 epochs" in text  # the guide's words
    assert "tunesmith departs from it (rule no-epoch-cliff-at-1k)" in text
    assert "The guide's rule as written gives epochCount = 2" in text
    assert "62% to 100%" in text
    assert advise_json("--records", 1000, "--model", "micro")["hyperParameters"]["epochCount"] == "5"
    written = advise_json("--records", 1000, "--model", "micro", "--as-written")
    assert written["hyperParameters"]["epochCount"] == "2" and "deviation" not in written["reasons"]["epochCount"]
    plain = run("advise", "--records", 1000, "--model", "micro")
    assert "departs from the guide here" in " ".join(plain.output.split())
    assert "departs" not in run("advise", "--records", 3000, "--model", "micro", "--explain").output


def test_advise_accepts_hosted_ids():
    assert advise_json("--records", 3200, "--model", "amazon.nova-pro-v1:0:300k")["model"] == "pro"


def test_advise_unknown_model():
    result = run("advise", "--records", 10, "--model", "gpt-9")
    assert result.exit_code == 2
    assert 'unknown model "gpt-9": known models are micro, lite, pro' in result.output


def test_advise_needs_file_or_records():
    assert run("advise", "--model", "micro").exit_code == 2


def test_advise_flags_override_and_warn():
    data = advise_json("--records", 100, "--model", "micro", "--epochs", 1, "--warmup-steps", 20, "--duplicate", 1)
    assert data["hyperParameters"]["epochCount"] == "1"
    assert data["reasons"]["epochCount"]["rule"] == "set-by-you"
    assert "never reaches the value you set" in data["warnings"][0]


def test_advise_rejects_bad_flags_with_table_messages():
    result = run("advise", "--records", 100, "--model", "micro", "--learning-rate", "0.5")
    assert result.exit_code == 1
    assert "learningRate=0.5 is out of range: must be between 1e-06 and 0.0001" in result.output


def test_advise_a_file(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(300))
    write_jsonl(in_tmp / "v.jsonl", arithmetic(30, start=1000))
    data = advise_json("t.jsonl", "--validation", "v.jsonl", "--model", "micro")
    assert data["records"] == 300 and data["duplicationFactor"] == 4
    text = run("advise", "t.jsonl", "--model", "micro").output
    assert "Duplicate with: tunesmith duplicate t.jsonl --factor 4 --out t.x4.jsonl" in text
    assert "[Increasing Effective Epochs]" in text


def test_advise_warns_when_validation_is_unlike_training(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(300))
    french = [
        conversation(f"Bonjour, traduisez la phrase {i} s'il vous plaît", "Voici une traduction soignée et élégante.")
        for i in range(20)
    ]
    write_jsonl(in_tmp / "v.jsonl", french)
    data = advise_json("t.jsonl", "--validation", "v.jsonl", "--model", "micro")
    assert any("looks unlike training data" in w and "(Diversify and Augment)" in w for w in data["warnings"])


def test_advise_refuses_invalid_data(in_tmp):
    shutil.copy(FIXTURES / "broken.jsonl", in_tmp)
    result = run("advise", "broken.jsonl", "--model", "micro")
    assert result.exit_code == 1
    assert 'broken.jsonl:11: messages[2].role: "bot" is not "user" or "assistant"' in result.output


def test_hyperparameters_table_and_json():
    assert "learningRateWarmupSteps" in run("hyperparameters").output
    data = json.loads(run("hyperparameters", "--json").output)
    assert [row["key"] for row in data] == ["epochCount", "learningRate", "learningRateWarmupSteps"]
    assert data[1] == {
        "key": "learningRate", "name": "Learning rate", "type": "float", "minimum": 1e-6, "maximum": 1e-4,
        "default": 1e-5, "flag": "--learning-rate", "description": "Peak learning rate, reached at the end of warmup.",
    }


def test_check_names_every_problem():
    result = run("hyperparameters", "check", "epochCount=0", "learningRate=abc", "learningRateWarmupSteps=21")
    assert result.exit_code == 1
    assert "epochCount=0 is out of range: must be between 1 and 5" in result.output
    assert "learningRate=abc is not a number" in result.output
    assert "learningRateWarmupSteps=21 is out of range: must be between 0 and 20" in result.output


def test_check_valid_prints_resolved_values():
    result = run("hyperparameters", "check", "epochCount=3", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["hyperParameters"] == {
        "epochCount": "3", "learningRate": "1e-05", "learningRateWarmupSteps": "10",
    }
    text = run("hyperparameters", "check", "--learning-rate", "5e-5").output
    assert "5e-05" in text and "default" in text


def test_check_rejects_a_key_given_twice():
    result = run("hyperparameters", "check", "epochCount=3", "--epochs", "4")
    assert result.exit_code == 1 and "epochCount is given more than once" in result.output


def test_validate_exit_codes_and_json(in_tmp):
    write_jsonl(in_tmp / "ok.jsonl", arithmetic(20))
    result = run("validate", "ok.jsonl")
    assert result.exit_code == 0 and "valid: 20 records" in result.output
    shutil.copy(FIXTURES / "broken.jsonl", in_tmp)
    result = run("validate", "broken.jsonl", "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["valid"] is False and len(data["errors"]) == 26
    assert set(data["errors"][0]) == {"file", "line", "field", "message"}
    text = run("validate", "broken.jsonl", "--max-problems", 3).output
    assert "... and 23 more errors" in text


def test_validate_missing_file(in_tmp):
    result = run("validate", "nope.jsonl")
    assert result.exit_code == 1 and "nope.jsonl: file: no such file" in result.output


def test_duplicate_command(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(10))
    result = run("duplicate", "t.jsonl", "--factor", 3, "--out", "t3.jsonl")
    assert result.exit_code == 0 and "wrote 30 records (10 x 3) to t3.jsonl" in result.output
    again = run("duplicate", "t.jsonl", "--factor", 3, "--out", "t3.jsonl")
    assert again.exit_code == 1 and "already exists" in again.output


def test_console_script_is_installed(tmp_path):
    exe = shutil.which("tunesmith")
    command = [exe] if exe else [sys.executable, "-m", "tunesmith"]
    out = subprocess.run([*command, "advise", "--records", "3200", "--model", "micro", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["hyperParameters"]["learningRateWarmupSteps"] == "5"


def test_command_summaries_match_the_commands():
    """``tunesmith --help`` lists each command from its summary; the summary is its docstring's first sentence."""
    from tunesmith.cli import COMMANDS

    context = click.Context(cli)
    for name, lazy in COMMANDS.items():
        command = cli.get_command(context, name)
        assert command is not None and command.name == name
        assert command.get_short_help_str(10**6) == lazy.summary, f"update COMMANDS[{name!r}].summary in tunesmith/cli/__init__.py"


def test_help_lists_every_command_without_importing_torch():
    code = "import sys; from tunesmith.cli import main; sys.argv = ['tunesmith', '--help']\ntry: main()\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "False"
    assert all(f"  {name} " in out for name in ("advise", "train", "validate", "serve", "jobs", "decide"))
