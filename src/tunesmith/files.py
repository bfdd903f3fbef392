"""Writing and fingerprinting files: what the data, distillation and model code share."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 so that ``path`` holds the old content or all of the new, never a part.

    The text goes to a hidden ``.NAME.partial`` beside ``path``, is synced, then renamed over it.
    """
    temporary = path.with_name(f".{path.name}.partial")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
