"""Custom models whose files live on S3 (trained on another host), downloaded for the runtime API.

Each model is downloaded once into ``HOME/model-cache/MODEL_ID/`` (a result folder:
manifest.json and model/), which appears whole or not at all. The folder is bounded
(``--model-cache-gb``): before a download, the least recently used models are deleted until
the new one fits, except those in use (loaded in memory, or loading), which are never deleted.
A folder's modification time records its last use, so the order survives a restart.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections.abc import Collection
from pathlib import Path

from tunesmith.jobs import artifacts
from tunesmith.jobs.errors import ServiceUnavailableException, ValidationException

log = logging.getLogger("tunesmith.service")
GB = 1024**3
SERVED_PARTS = ("manifest.json", "model")
"""What of a result folder the runtime needs (:func:`~tunesmith.models.registry.resolve_model` loads model/)."""


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class ModelDownloads:
    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = folder, max_bytes
        self._lock = threading.Lock()

    def name(self, key: str) -> str:
        """The cache folder's name for the model ``key`` (its ARN): the model id."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", key.rsplit("/", 1)[-1])

    def local(self, key: str, uri: str, in_use: Collection[str] = ()) -> Path:
        """A local copy of the model stored at ``uri`` (a result folder on S3), downloaded if
        not already here. ``in_use``: keys of the models that must not be deleted to make room."""
        target = self.folder / self.name(key)
        with self._lock:
            if (target / "manifest.json").is_file():
                os.utime(target)
                return target
            try:
                needed = sum(size for relative, size in artifacts.objects(uri) if relative.split("/", 1)[0] in SERVED_PARTS)
            except Exception as exc:
                raise ServiceUnavailableException(f"cannot download model {key} from {uri}: {exc}") from exc
            if needed == 0:
                raise ServiceUnavailableException(f"cannot download model {key}: nothing is stored under {uri}")
            if needed > self.max_bytes:
                raise ValidationException(f"model {key} is {needed / GB:.2f} GB, more than the model cache holds "
                                          f"({self.max_bytes / GB:.2f} GB); start the server with a larger --model-cache-gb")
            self._make_room(needed, keep={self.name(k) for k in (*in_use, key)})
            self.folder.mkdir(parents=True, exist_ok=True)
            try:
                artifacts.retried(f"download model {key} from {uri}",
                                  lambda: artifacts.download_folder(uri, target, parts=SERVED_PARTS))
            except artifacts.ArtifactError as exc:
                raise ServiceUnavailableException(str(exc)) from exc
            if not (target / "manifest.json").is_file():
                shutil.rmtree(target, ignore_errors=True)
                raise ServiceUnavailableException(f"cannot use model {key}: {uri} holds no manifest.json (was its upload cut short?)")
            log.info("model %s downloaded from %s (%.2f GB)", key, uri, needed / GB)
            return target

    def _make_room(self, needed: int, keep: set[str]) -> None:
        """Delete the least recently used models (not those in ``keep``) until ``needed`` more bytes fit."""
        if not self.folder.is_dir():
            return
        cached = sorted((p for p in self.folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        sizes = {p: folder_bytes(p) for p in cached}
        total = sum(sizes.values())
        for path in cached:
            if total + needed <= self.max_bytes:
                break
            if path.name in keep:
                continue
            shutil.rmtree(path, ignore_errors=True)
            total -= sizes[path]
            log.info("model cache: deleted %s (least recently used) to make room", path.name)
        if total + needed > self.max_bytes:
            log.warning("model cache: %.2f GB in use exceeds --model-cache-gb (%.2f GB)", (total + needed) / GB, self.max_bytes / GB)
