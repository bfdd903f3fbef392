"""Loaded models for the runtime API: a bounded cache, each model behind its own lock.

Models stay loaded between calls (least recently used first out, ``MAX_LOADED`` at once),
on the server's ``--device`` in its precision (:func:`tunesmith.devices.place`, as for
training). Generation runs under a lock per model: one model serves one request at a time.
A custom model whose files are on S3 only is downloaded first (:mod:`~tunesmith.inference.model_downloads`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from tunesmith.devices import Placement
from tunesmith.inference.model_downloads import ModelDownloads
from tunesmith.jobs import uris
from tunesmith.jobs.errors import ValidationException

MAX_LOADED = 2


@dataclass
class LoadedModel:
    name: str
    model: Any
    tokenizer: Any
    lock: threading.Lock
    placement: Placement


class ModelCache:
    def __init__(self, placement: Placement, capacity: int = MAX_LOADED, downloads: ModelDownloads | None = None):
        self.placement, self.capacity, self.downloads = placement, capacity, downloads
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading = threading.Lock()

    def get(self, key: str, spec: str) -> LoadedModel:
        """The model for ``spec`` (anything :func:`resolve_model` accepts, or the S3 URI of a
        result folder), loading it once."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        from tunesmith.models.gguf_cache import ModelUnavailableError
        from tunesmith.models.loading import load_model, load_tokenizer
        from tunesmith.models.registry import resolve_model

        with self._loading:  # one load at a time; a second request for the same model waits for the first
            with self._lock:
                if key in self._models:
                    return self._models[key]
            if uris.is_s3(spec):
                if self.downloads is None:
                    raise ValidationException(f"model {key} is stored on S3 ({spec}) and this server has no model cache")
                with self._lock:
                    in_use = list(self._models)
                spec = str(self.downloads.local(key, spec, in_use))
            try:
                source = resolve_model(spec)
                model = load_model(source, device=self.placement.device)
                loaded = LoadedModel(source.name, model, load_tokenizer(source), threading.Lock(), self.placement)
            except ModelUnavailableError as exc:
                raise ValidationException(str(exc)) from exc
        with self._lock:
            self._models[key] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
        return loaded
