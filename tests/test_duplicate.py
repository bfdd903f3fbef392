"""tunesmith duplicate: K whole copies, input untouched, no partial output."""

import codecs

import pytest

from conftest import arithmetic, write_jsonl
from tunesmith.datasets import validate_dataset
from tunesmith.datasets.duplicate import DuplicationError, duplicate_dataset


def test_writes_k_copies_and_leaves_the_input_alone(in_tmp):
    source = write_jsonl(in_tmp / "t.jsonl", arithmetic(10) + [""])
    before = source.read_bytes()
    result = duplicate_dataset("t.jsonl", "t.x3.jsonl", 3)
    assert (result.records_in, result.records_out) == (10, 30)
    assert source.read_bytes() == before
    lines = (in_tmp / "t.x3.jsonl").read_text().splitlines()
    original = [line for line in before.decode().splitlines() if line]
    assert lines == original * 3
    report = validate_dataset("t.x3.jsonl")
    assert report.valid and report.records == 30


def test_bom_and_crlf_are_normalised(in_tmp):
    path = write_jsonl(in_tmp / "w.jsonl", arithmetic(8), newline="\r\n")
    path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    duplicate_dataset("w.jsonl", "out.jsonl", 2)
    data = (in_tmp / "out.jsonl").read_bytes()
    assert not data.startswith(codecs.BOM_UTF8) and b"\r" not in data
    assert [str(p) for p in validate_dataset("out.jsonl").log.warnings] == [
        "out.jsonl: dataset: 16 records: 100+ recommended",
        "out.jsonl: dataset: every record appears 2 times (8 unique records): a duplicated dataset; "
        "validate the original to check it for accidental duplicates",
    ]


def test_refuses_to_overwrite_without_force(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(8))
    (in_tmp / "out.jsonl").write_text("keep me\n")
    with pytest.raises(DuplicationError, match="out.jsonl already exists: choose another name or pass --force"):
        duplicate_dataset("t.jsonl", "out.jsonl", 2)
    assert (in_tmp / "out.jsonl").read_text() == "keep me\n"
    duplicate_dataset("t.jsonl", "out.jsonl", 2, force=True)
    assert len((in_tmp / "out.jsonl").read_text().splitlines()) == 16


def test_refuses_to_overwrite_the_input_even_with_force(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(8))
    with pytest.raises(DuplicationError, match="is the input file"):
        duplicate_dataset("t.jsonl", "./t.jsonl", 2, force=True)


@pytest.mark.parametrize("factor", [0, 101])
def test_factor_bounds(in_tmp, factor):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(8))
    with pytest.raises(DuplicationError, match="must be between 1 and 100"):
        duplicate_dataset("t.jsonl", "o.jsonl", factor)


def test_invalid_input_is_refused(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(8) + ["{broken"])
    with pytest.raises(DuplicationError, match="t.jsonl has 1 error"):
        duplicate_dataset("t.jsonl", "o.jsonl", 2)
    assert not (in_tmp / "o.jsonl").exists()


def test_unwritable_destination_leaves_nothing(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(8))
    with pytest.raises(DuplicationError, match="cannot write in missing-folder"):
        duplicate_dataset("t.jsonl", "missing-folder/o.jsonl", 2)


def test_failure_mid_write_leaves_no_partial_file(in_tmp, monkeypatch):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(8))
    import tunesmith.datasets.duplicate as module

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "_copy_records", disk_full)
    with pytest.raises(DuplicationError, match="No space left on device"):
        duplicate_dataset("t.jsonl", "o.jsonl", 2)
    assert sorted(p.name for p in in_tmp.iterdir()) == ["t.jsonl"]
