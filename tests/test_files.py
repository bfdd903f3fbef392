"""The shared file helpers: atomic writes and SHA-256 fingerprints."""

import hashlib

from tunesmith.distillation.synthesis import is_refusal
from tunesmith.files import atomic_write_text, file_sha256


def test_atomic_write_replaces_the_whole_file_and_leaves_no_partial(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")
    atomic_write_text(target, "new ünïcode\n")
    assert target.read_text(encoding="utf-8") == "new ünïcode\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_file_sha256_reads_in_chunks(tmp_path):
    data = bytes(range(256)) * 8193  # just over 2 MiB: three 1 MiB chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_refusals_are_recognised_by_their_opening():
    assert is_refusal("I'm sorry, I can't help with that.")
    assert is_refusal("  As an AI, I cannot do this")
    assert not is_refusal("Sorry to hear that! The answer is 4.")
    assert not is_refusal("4, I cannot stress that enough")
