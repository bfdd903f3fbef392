"""Dataset validation: every record rule and file-level mistake, as FILE:LINE: field: message."""

import codecs
import os
import shutil

import pytest

from conftest import FIXTURES, arithmetic, conversation, write_jsonl
from tunesmith.datasets import validate_dataset

BROKEN_EXPECTED = [
    "broken.jsonl:9: record: invalid JSON at column 115: Expecting ',' delimiter (the record ends early: each record must be complete on one line)",
    "broken.jsonl:10: record: expected a JSON object {...}, got an array",
    'broken.jsonl:11: messages[2].role: "bot" is not "user" or "assistant"',
    'broken.jsonl:12: messages[0].role: the first message must be from "user", got "assistant"',
    'broken.jsonl:13: messages[1].role: "user" follows another "user" message: roles must alternate',
    'broken.jsonl:14: messages[2].role: the last message must be the "assistant" answer to learn, got "user"',
    "broken.jsonl:15: messages: has 1 message(s); at least 2 (a user turn and the assistant's answer) are needed",
    "broken.jsonl:16: messages[1].content[0].text: is empty",
    'broken.jsonl:17: messages[0].content[0].text: starts with the reserved word "User:": the prompt format reserves it; rephrase',
    "broken.jsonl:18: messages[0].content[1]: image blocks are not supported: this build of tunesmith is text-only",
    'broken.jsonl:19: schemaVersion: "bedrock-conversation-2023" is not "bedrock-conversation-2024"',
    "broken.jsonl:20: messages: missing: a record needs an array of user/assistant messages",
    'broken.jsonl:21: messages[1].content: expected an array of content blocks like [{"text": "..."}], got a string',
    'broken.jsonl:22: system: expected an array of content blocks like [{"text": "..."}], got a string',
    'broken.jsonl:23: record: key "messages" appears twice in one JSON object',
    "broken.jsonl:24: record: invalid JSON: NaN is not valid JSON",
    "broken.jsonl:25: record: is not valid UTF-8 (byte 0xe9 at column 57): save the file as UTF-8",
    'broken.jsonl:26: messages[1].role: missing: "user" or "assistant"',
    "broken.jsonl:27: messages[0].content[0].text: expected a string, got a number",
    'broken.jsonl:28: messages[0].content: is empty: give at least one {"text": "..."} block',
    'broken.jsonl:29: system[0].text: starts with the reserved word "System:": the prompt format reserves it; rephrase',
    "broken.jsonl:30: record: expected a JSON object {...}, got a string",
    'broken.jsonl:31: messages: missing; this looks like a continued pre-training record ({"text": ...}): use --kind pretraining',
    "broken.jsonl:32: messages[0].content[0]: video blocks are not supported: this build of tunesmith is text-only",
    'broken.jsonl:33: messages[0].content[0]: unknown content block ("txt"); expected {"text": "..."}',
    "broken.jsonl:34: messages: expected an array of messages, got an object",
]


def test_broken_fixture_reports_each_mistake_once(in_tmp):
    shutil.copy(FIXTURES / "broken.jsonl", in_tmp)
    report = validate_dataset("broken.jsonl")
    assert [str(p) for p in report.log.errors] == BROKEN_EXPECTED
    assert len(BROKEN_EXPECTED) >= 12
    assert not report.valid
    assert report.training.records == 8  # the eight good lines still count


def test_valid_file(in_tmp):
    write_jsonl(in_tmp / "ok.jsonl", arithmetic(120))
    report = validate_dataset("ok.jsonl")
    assert report.valid and report.records == 120
    assert report.log.error_count == report.log.warning_count == 0
    stats = report.as_dict()["stats"]["training"]
    assert stats["messagesPerRecord"] == {"min": 2, "median": 2.0, "p95": 2.0, "max": 2}
    assert set(stats["charactersPerRecord"]) == {"min", "median", "p95", "max"}


def test_system_and_multi_turn_records_are_valid(in_tmp):
    record = conversation("Hi", "Hello!", system="Be brief.")
    record["messages"] += [
        {"role": "user", "content": [{"text": "And again?"}, {"text": "Two blocks."}]},
        {"role": "assistant", "content": [{"text": "Hello again."}]},
    ]
    write_jsonl(in_tmp / "t.jsonl", [record] + arithmetic(9))
    report = validate_dataset("t.jsonl")
    assert report.valid, [str(p) for p in report.log.errors]
    assert report.training.summary()["messagesPerRecord"]["max"] == 4


def test_missing_file_and_directory(in_tmp):
    assert [str(p) for p in validate_dataset("nope.jsonl").log.errors] == ["nope.jsonl: file: no such file"]
    (in_tmp / "folder").mkdir()
    assert [str(p) for p in validate_dataset("folder").log.errors] == ["folder: file: is a directory, not a JSONL file"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_is_refused_without_being_opened(in_tmp):
    """Opening a FIFO blocks until a writer comes: the check happens before any open, so this cannot hang."""
    os.mkfifo("pipe.jsonl")
    assert [str(p) for p in validate_dataset("pipe.jsonl").log.errors] == ["pipe.jsonl: file: is not a regular file (a FIFO)"]


@pytest.mark.skipif(os.name != "posix", reason="a POSIX character device")
def test_device_is_refused():
    assert [str(p) for p in validate_dataset(os.devnull).log.errors] == [f"{os.devnull}: file: is not a regular file (a character device)"]


def test_json_array_file(in_tmp):
    (in_tmp / "a.jsonl").write_text('[\n  {"messages": []}\n]\n')
    errors = [str(p) for p in validate_dataset("a.jsonl").log.errors]
    assert errors == [
        "a.jsonl:1: file: is a JSON array, not JSON Lines: write one JSON object per line "
        "(for example: jq -c '.[]' in.json > out.jsonl)"
    ]


def test_pretty_printed_object_hints_one_record_per_line(in_tmp):
    (in_tmp / "p.jsonl").write_text('{\n  "messages": []\n}\n')
    first = str(validate_dataset("p.jsonl").log.errors[0])
    assert first.startswith("p.jsonl:1: record: invalid JSON at column 2")
    assert "each record must be complete on one line" in first


def test_utf8_bom_and_crlf_are_accepted_with_warnings(in_tmp):
    path = write_jsonl(in_tmp / "w.jsonl", arithmetic(10), newline="\r\n")
    path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    report = validate_dataset("w.jsonl")
    assert report.valid and report.records == 10
    assert [str(p) for p in report.log.warnings] == [
        "w.jsonl:1: file: starts with a UTF-8 byte-order mark (BOM); it was ignored",
        "w.jsonl: file: 10 line(s) end in Windows CRLF; accepted",
        "w.jsonl: dataset: 10 records: 100+ recommended",
    ]


def test_utf16_file(in_tmp):
    (in_tmp / "u.jsonl").write_text('{"messages": []}\n', encoding="utf-16")
    assert [str(p) for p in validate_dataset("u.jsonl").log.errors] == [
        "u.jsonl: file: is UTF-16 text: save it as UTF-8 (without a byte-order mark)"
    ]


def test_binary_file(in_tmp):
    (in_tmp / "b.jsonl").write_bytes(b"PK\x03\x04\x00\x00binary")
    assert [str(p) for p in validate_dataset("b.jsonl").log.errors] == [
        "b.jsonl:1: file: contains NUL bytes: this looks like a binary file, not JSON Lines text"
    ]


def test_blank_lines_are_skipped_with_a_warning(in_tmp):
    records = arithmetic(10)
    write_jsonl(in_tmp / "b.jsonl", records[:5] + [""] + records[5:])
    report = validate_dataset("b.jsonl")
    assert report.valid and report.records == 10
    assert "b.jsonl:6: record: blank line skipped" in [str(p) for p in report.log.warnings]


def test_unknown_fields_are_warnings(in_tmp):
    records = arithmetic(10)
    records[0]["id"] = 7
    write_jsonl(in_tmp / "x.jsonl", records)
    report = validate_dataset("x.jsonl")
    assert report.valid
    assert 'x.jsonl:1: id: unknown field "id" is ignored (known: schemaVersion, system, messages)' in [
        str(p) for p in report.log.warnings
    ]


def test_listing_is_capped_but_everything_is_counted(in_tmp):
    write_jsonl(in_tmp / "many.jsonl", ["{bad"] * 250)
    report = validate_dataset("many.jsonl", max_listed=20)
    assert report.log.error_count == 250
    assert len(report.log.errors) == 20 and report.log.errors_omitted == 230


@pytest.mark.parametrize(
    "count,valid,message",
    [
        (7, False, "c.jsonl: dataset: 7 records in training plus validation; at least 8 are required"),
        (8, True, "c.jsonl: dataset: 8 records: 100+ recommended"),
        (99, True, "c.jsonl: dataset: 99 records: 100+ recommended"),
        (100, True, None),
    ],
)
def test_record_count_limits(in_tmp, count, valid, message):
    write_jsonl(in_tmp / "c.jsonl", arithmetic(count))
    report = validate_dataset("c.jsonl")
    assert report.valid is valid
    dataset_problems = [str(p) for p in report.log.errors + report.log.warnings if p.field == "dataset"]
    assert dataset_problems == ([message] if message else [])


def test_upper_limit_counts_training_plus_validation(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(20_000))
    write_jsonl(in_tmp / "v.jsonl", arithmetic(1, start=30_000))
    report = validate_dataset("t.jsonl", ["v.jsonl"])
    assert [str(p) for p in report.log.errors] == [
        "t.jsonl: dataset: 20,001 records in training plus validation; at most 20,000 are allowed"
    ]
    assert validate_dataset("t.jsonl").valid  # exactly 20,000 is fine


def test_pretraining_records(in_tmp):
    records = [{"text": f"Paragraph number {i}."} for i in range(9)]
    records += [{"input": "old style"}, {"text": ""}, {"text": 5}, conversation("q", "a")]
    write_jsonl(in_tmp / "pt.jsonl", records)
    report = validate_dataset("pt.jsonl", kind="pretraining")
    assert [str(p) for p in report.log.errors] == [
        'pt.jsonl:10: text: missing: found "input", which older models used; rename it to "text"',
        "pt.jsonl:11: text: is empty",
        "pt.jsonl:12: text: expected a string, got a number",
        "pt.jsonl:13: text: missing: this looks like a conversation record; use --kind fine-tuning",
    ]
    assert report.training.records == 9


def test_distillation_accepts_prompts_and_labelled_examples(in_tmp):
    records = [conversation(f"Question {i}?") for i in range(10)] + arithmetic(3)
    write_jsonl(in_tmp / "d.jsonl", records)
    report = validate_dataset("d.jsonl", kind="distillation")
    assert report.valid
    assert (report.training.prompt_only, report.training.labelled) == (10, 3)
    # The same prompts are not valid fine-tuning data: nothing to learn.
    errors = validate_dataset("d.jsonl").log.errors
    assert str(errors[0]) == 'd.jsonl:1: messages: has 1 message(s); at least 2 (a user turn and the assistant\'s answer) are needed'


def test_distillation_prompt_limit(in_tmp, monkeypatch):
    from tunesmith import guide

    monkeypatch.setattr(guide, "MAX_DISTILLATION_PROMPTS", 9)
    write_jsonl(in_tmp / "d.jsonl", [conversation(f"Question {i}?") for i in range(10)])
    assert [str(p) for p in validate_dataset("d.jsonl", kind="distillation").log.errors] == [
        "d.jsonl: dataset: 10 prompts; distillation takes at most 9"
    ]


def test_too_many_validation_files(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(10))
    names = [str(write_jsonl(in_tmp / f"v{i}.jsonl", arithmetic(1, start=100 + i)).name) for i in range(11)]
    errors = [str(p) for p in validate_dataset("t.jsonl", names).log.errors]
    assert errors == ["t.jsonl: dataset: 11 validation files; at most 10 are allowed"]


def test_json_report_shape(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(10) + ["{oops"])
    data = validate_dataset("t.jsonl").as_dict()
    assert {"valid", "records", "errors", "warnings", "stats"} <= set(data)
    assert data["valid"] is False and data["records"] == 10
    assert data["errors"][0] == {
        "file": "t.jsonl", "line": 11, "field": "record",
        "message": "invalid JSON at column 2: Expecting property name enclosed in double quotes",
    }
