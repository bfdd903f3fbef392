"""Writing and fingerprinting files: what the data, distillation and model code share."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
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


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``/proc/self/status``):
    setting it to read it back would, for an instant, apply to files other threads create."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def set_modes(path: Path, private: bool = False) -> None:
    """Give ``path`` (a file, or a folder and everything in it) the modes a newly created file or
    folder gets under the umask (typically 0644 and 0755), or owner-only ones (0600 and 0700)
    when ``private``. Needed because safetensors writes its files 0600 and ``mkdtemp`` makes 0700
    folders, whatever the umask."""
    mask = 0o077 if private else current_umask()
    for item in [path, *(path.rglob("*") if path.is_dir() else [])]:
        if item.is_symlink():
            continue
        executable = item.is_dir() or item.stat().st_mode & 0o111
        item.chmod((0o777 if executable else 0o666) & ~mask)


@contextlib.contextmanager
def staged_folder(final: Path, private: bool = False) -> Iterator[Path]:
    """A hidden folder beside ``final`` to fill; it replaces ``final`` when the block ends
    without an error, and is removed when it raises. Readers never see a half-written folder.
    The folder and its files get the umask's modes, or owner-only ones if ``private`` (:func:`set_modes`)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield staging
        set_modes(staging, private)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
