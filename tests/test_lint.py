"""Quality lint: duplicates, conflicting labels, leakage, outliers, train/validation mismatch."""

import json
import tracemalloc

from conftest import arithmetic, conversation, write_jsonl
from tunesmith.datasets import lint, validate_dataset


def warnings_of(report):
    return [str(p) for p in report.log.warnings]


def test_exact_duplicates(in_tmp):
    records = arithmetic(100)
    write_jsonl(in_tmp / "t.jsonl", records + [records[3], records[3]])
    report = validate_dataset("t.jsonl")
    assert report.valid
    assert warnings_of(report) == [
        "t.jsonl:101: record: exact duplicate of line 4",
        "t.jsonl:102: record: exact duplicate of line 4",
    ]


def test_conflicting_labels(in_tmp):
    records = arithmetic(100) + [conversation("What is 5 plus 5?", "Eleven.")]
    write_jsonl(in_tmp / "t.jsonl", records)
    assert warnings_of(validate_dataset("t.jsonl")) == [
        "t.jsonl:101: messages: same prompt as line 6 but a different answer (conflicting labels)"
    ]


def test_system_prompt_is_part_of_the_prompt(in_tmp):
    records = arithmetic(100) + [conversation("What is 5 plus 5?", "Ten.", system="Answer in words.")]
    write_jsonl(in_tmp / "t.jsonl", records)
    assert warnings_of(validate_dataset("t.jsonl")) == []


def test_leakage_from_validation_into_training(in_tmp):
    train = arithmetic(100)
    write_jsonl(in_tmp / "t.jsonl", train)
    write_jsonl(in_tmp / "v.jsonl", [train[0], conversation("What is 1 plus 1?", "Two."), *arithmetic(5, start=500)])
    assert warnings_of(validate_dataset("t.jsonl", ["v.jsonl"])) == [
        "v.jsonl:1: record: also in the training data (t.jsonl:1): validation loss will look better than it is",
        "v.jsonl:2: messages: its prompt is also in the training data (t.jsonl:2) with a different answer",
    ]


def test_duplicates_between_validation_files_are_not_leakage(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(100))
    write_jsonl(in_tmp / "v1.jsonl", arithmetic(3, start=500))
    write_jsonl(in_tmp / "v2.jsonl", arithmetic(1, start=500))
    assert warnings_of(validate_dataset("t.jsonl", ["v1.jsonl", "v2.jsonl"])) == [
        "v2.jsonl:1: record: exact duplicate of v1.jsonl:1"
    ]


def test_repeated_warnings_are_summarised(in_tmp):
    records = arithmetic(100)
    write_jsonl(in_tmp / "t.jsonl", records + [records[0]] * 30)
    report = validate_dataset("t.jsonl")
    listed = [w for w in warnings_of(report) if "exact duplicate" in w]
    assert len(listed) == lint.LISTED_PER_CHECK
    assert "t.jsonl: dataset: ... and 10 more duplicate warnings" in warnings_of(report)


def test_length_outliers(in_tmp):
    records = arithmetic(100) + [conversation("Tell me everything.", "word " * 2000)]
    write_jsonl(in_tmp / "t.jsonl", records)
    outliers = [w for w in warnings_of(validate_dataset("t.jsonl")) if "outlier" in w]
    assert len(outliers) == 1
    assert outliers[0].startswith("t.jsonl:101: record: unusually long: 10,0")


def test_no_outliers_in_a_tight_distribution(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(200))
    assert not [w for w in warnings_of(validate_dataset("t.jsonl")) if "outlier" in w]


def test_validation_that_looks_unlike_training(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(100))
    other = [
        conversation(f"Translate sentence {i} into French, please, carefully and politely.",
                     f"Voici la traduction française numéro {i}, faite avec soin et politesse.")
        for i in range(20)
    ]
    write_jsonl(in_tmp / "v.jsonl", other)
    report = validate_dataset("t.jsonl", ["v.jsonl"])
    unlike = [w for w in warnings_of(report) if "looks unlike" in w]
    assert len(unlike) == 2
    assert "median record is 3.6x as long" in unlike[0]
    assert "of its words occur in the training data" in unlike[1]
    assert report.comparison["vocabularyCoverage"] < lint.MIN_VOCABULARY_COVERAGE


def test_matching_validation_has_no_distribution_warning(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(100))
    write_jsonl(in_tmp / "v.jsonl", arithmetic(20, start=1000))
    report = validate_dataset("t.jsonl", ["v.jsonl"])
    assert warnings_of(report) == []
    assert report.comparison["vocabularyCoverage"] >= 0.6


def test_memory_stays_bounded_on_a_large_file(tmp_path, monkeypatch):
    """Streaming: peak memory does not grow with the file (lint tables are capped)."""
    monkeypatch.setattr(lint, "MAX_TRACKED_RECORDS", 1_000)
    monkeypatch.setattr(lint, "MAX_VOCABULARY", 1_000)
    path = tmp_path / "big.jsonl"
    filler = "lorem ipsum dolor sit amet " * 8
    with path.open("w") as out:
        for i in range(25_000):  # ~9 MB
            out.write(json.dumps(conversation(f"Question {i}: {filler}", f"Answer {i}: {filler}")) + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    report = validate_dataset(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.records == 25_000
    assert size > 8_000_000
    assert peak < size / 4, f"peak {peak:,} bytes for a {size:,}-byte file"
    assert any("covered the first 1,000 records only" in w for w in warnings_of(report))
