"""tunesmith refine: clean-up, model rewriting with validation, report, input untouched."""

import json

from click.testing import CliRunner

from conftest import arithmetic, conversation, write_jsonl
from tunesmith.cli import cli
from tunesmith.distillation.refine import normalise, refine
from tunesmith.evaluation.generation import Completion


class Rewriter:
    name = "rewriter"

    def answer(self, chats, max_tokens, on_done=None):
        out = []
        for chat in chats:
            answer = chat[-1]["content"].split("Answer:\n", 1)[1].split("\n\nRewrite", 1)[0]
            if "7" in answer:
                out.append(Completion("", 1, 0, "end_turn"))  # an empty rewrite: discarded
            elif "9" in answer:
                out.append(Completion("Sure! " * 50, 1, 50, "max_tokens"))  # cut off: discarded
            else:
                out.append(Completion(answer.upper(), 1, 5, "end_turn"))
        return out


def test_normalise():
    assert normalise("  a  \t b \r\n\r\n\r\n\r\nc  ") == "a b\n\nc"


def test_clean_up_and_rewrite(tmp_path):
    records = arithmetic(10)
    records[2]["messages"][1]["content"][0]["text"] = "  2 plus 2   is 4.  "
    records += [records[0], conversation("What is 1 plus 1?", "Two.")]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    before = source.read_bytes()
    report = refine(source, tmp_path / "out.jsonl", Rewriter())
    assert source.read_bytes() == before
    assert report.records_in == 12 and report.records_out == 11
    assert report.changes["whitespace normalised"] == 1 and report.changes["exact duplicate dropped"] == 1
    assert report.conflicts == [[2, 12]] and report.changes["conflicting labels flagged"] == 2
    assert report.changes["rewrite discarded (empty, refused or cut off)"] == 2
    assert report.changes["answer rewritten"] == 9
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out[0]["messages"][1]["content"][0]["text"] == "0 PLUS 0 IS 0."
    assert out[7]["messages"][1]["content"][0]["text"] == "7 plus 7 is 14."  # original kept
    changes = [json.loads(line) for line in (tmp_path / "out.refine-changes.jsonl").read_text().splitlines()]
    assert len(changes) == 11 and changes[0]["changed"] and not changes[7]["changed"]


def test_cli_cleanup_only_and_overwrite_protection(in_tmp):
    write_jsonl(in_tmp / "in.jsonl", arithmetic(5) + [arithmetic(1)[0]])
    result = CliRunner().invoke(cli, ["refine", "in.jsonl", "--out", "out.jsonl", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["changes"]["exact duplicate dropped"] == 1
    again = CliRunner().invoke(cli, ["refine", "in.jsonl", "--out", "out.jsonl"])
    assert again.exit_code == 1 and "already exists: pass --force" in again.output
    same = CliRunner().invoke(cli, ["refine", "in.jsonl", "--out", "in.jsonl", "--force"])
    assert same.exit_code == 1 and "the input is never modified" in same.output
