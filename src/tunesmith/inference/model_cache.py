"""Loaded models for the runtime API: a bounded cache, each model behind its own lock.

Models stay loaded between calls (least recently used first out, ``MAX_LOADED`` at once),
on the server's ``--device`` in its precision (:func:`tunesmith.devices.place`, as for
training). Generation runs under a lock per model: one model serves one request at a time.
A custom model whose files are on S3 only is downloaded first (:mod:`~tunesmith.inference.model_downloads`).

The cache tells its listeners (``create_app`` wires the metrics in) of each load, with its
outcome and time, and each answered request's output tokens (:func:`~tunesmith.inference.answers.complete`
and :func:`~tunesmith.inference.answers.stream` report through :meth:`LoadedModel.answered`).
Inference imports nothing from the API: the listeners are plain callables.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.devices import Placement
from tunesmith.inference.model_downloads import ModelDownloads
from tunesmith.jobs import uris
from tunesmith.jobs.errors import ValidationException
from tunesmith.tiers import TIERS

MAX_LOADED = 2
log = logging.getLogger("tunesmith.service")


class ModelKind(enum.StrEnum):
    """What a runtime model id names, as metrics label it (a model's own id would be unbounded)."""

    BASE = "base"
    """A tier (micro, lite, pro)."""
    CUSTOM = "custom"
    """A custom model, by ARN, name or deployment."""


def kind_of(key: str) -> ModelKind:
    """The kind of a cache key (:func:`~tunesmith.inference.model_ids.resolve_model_id`: a tier's
    name, else a custom model's ARN)."""
    return ModelKind.BASE if key in TIERS else ModelKind.CUSTOM


@dataclass(frozen=True)
class ModelLoad:
    """One load into the cache (a cache hit is none), from the first file read to ready or failed."""

    kind: ModelKind
    seconds: float
    """S3 download included; waiting for another model's load is not."""
    ok: bool


@dataclass(frozen=True)
class Answered:
    """One answer complete, whole or streamed to its end."""

    kind: ModelKind
    output_tokens: int


InferenceEvent = ModelLoad | Answered
InferenceListener = Callable[[InferenceEvent], None]


def tell(listeners: Sequence[InferenceListener], event: InferenceEvent) -> None:
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # an observer must never fail the answer it observes
            log.exception("inference listener %r failed", listener)


@dataclass
class LoadedModel:
    name: str
    model: Any
    tokenizer: Any
    lock: threading.Lock
    placement: Placement
    kind: ModelKind = ModelKind.BASE
    listeners: tuple[InferenceListener, ...] = ()

    def answered(self, output_tokens: int) -> None:
        """Called once per answer, when it is complete."""
        tell(self.listeners, Answered(self.kind, output_tokens))


class ModelCache:
    def __init__(self, placement: Placement, capacity: int = MAX_LOADED, downloads: ModelDownloads | None = None,
                 listeners: Sequence[InferenceListener] = ()):
        self.placement, self.capacity, self.downloads = placement, capacity, downloads
        self.listeners = tuple(listeners)
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
        with self._loading:  # one load at a time; a second request for the same model waits for the first
            with self._lock:
                if key in self._models:
                    return self._models[key]
            started, kind = time.perf_counter(), kind_of(key)
            try:
                loaded = self._load(key, spec, kind)
            except Exception:
                tell(self.listeners, ModelLoad(kind, time.perf_counter() - started, ok=False))
                raise
            tell(self.listeners, ModelLoad(kind, time.perf_counter() - started, ok=True))
        with self._lock:
            self._models[key] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
        return loaded

    def _load(self, key: str, spec: str, kind: ModelKind) -> LoadedModel:
        from tunesmith.models.gguf_cache import ModelUnavailableError
        from tunesmith.models.loading import load_model, load_tokenizer
        from tunesmith.models.registry import resolve_model

        if uris.is_s3(spec):
            if self.downloads is None:
                raise ValidationException(f"model {key} is stored on S3 ({spec}) and this server has no model cache")
            with self._lock:
                in_use = list(self._models)
            spec = str(self.downloads.local(key, spec, in_use))
        try:
            source = resolve_model(spec)
            model = load_model(source, device=self.placement.device)
            return LoadedModel(source.name, model, load_tokenizer(source), threading.Lock(), self.placement, kind, self.listeners)
        except ModelUnavailableError as exc:
            raise ValidationException(str(exc)) from exc
