"""How fast this machine trains a model: a short measurement, cached per model and machine.

A run's time is modelled as::

    seconds = steps x per_step + micro_batches x per_micro_batch + work x per_position
    work    = computed token positions + head_share x target tokens

``per_step`` is the optimizer's share (gradient clipping, AdamW), ``per_micro_batch`` the fixed
cost of one forward and backward (kernel launches, Python), ``per_position`` the rest. Positions
are those the decoder runs over (padding included, a shared prefix counted once); the output
head runs only where a target token is predicted, so those positions weigh ``head_share`` more
(:func:`head_share`). Steps, micro-batches and work are exact for a run (``estimate.py``); only
the three rates are measured.

:func:`measure` times real optimizer steps of three shapes (one record; one full micro-batch;
the same records cut into about four micro-batches) on a set-up :class:`TrainingRun` whose
weights are thrown away afterwards, through the loop's own ``optimizer_step``: precision,
attention, prefix sharing and the LoRA fast paths are the ones training uses. The first step
is a warm-up and is not timed.

Rates depend on the model's shape and the machine, not on the data, so they are cached in
``TUNESMITH_HOME/calibration.json`` (default ``~/.cache/tunesmith``) under a key of the model's
files, the device (CPU model or GPU name), precision, method, quantization, prefix sharing,
thread count and the torch and tunesmith versions. Delete the file (or pass ``recalibrate``)
to measure again; an unreadable file is measured over and rewritten.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import platform
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunesmith import __version__
from tunesmith.datasets import DataError, validate_dataset
from tunesmith.devices import Placement
from tunesmith.files import atomic_write_text
from tunesmith.models.config import home
from tunesmith.models.gguf_cache import MICRO_SHA256
from tunesmith.models.registry import ModelSource
from tunesmith.training.config import TrainConfig
from tunesmith.training.examples import read_records
from tunesmith.training.loop import TrainingRun

CACHE_VERSION = 1
SAMPLE_RECORDS = 512
"""Records of the user's data a stand-alone calibration trains on: enough to fill a micro-batch."""
REPEATS = 2
"""Timed steps of each shape at least (after one warm-up step)..."""
MIN_SECONDS = 1.0
"""...and more, up to :data:`MAX_REPEATS`, until this much was timed: a tiny model's steps take
milliseconds, and a handful of them is at the mercy of whatever else the machine runs."""
MAX_REPEATS = 25
MIN_POSITION_SHARE = 0.25
"""The least share of a full micro-batch's time taken as per-position cost (``_fit``)."""
SPLIT_INTO = 4
"""The third shape cuts the full micro-batch's records into about this many micro-batches."""


@dataclass(frozen=True)
class Calibration:
    """Measured seconds per optimizer step, per micro-batch and per unit of work (module docstring)."""

    per_step: float
    per_micro_batch: float
    per_position: float
    measured_steps: int
    """Timed optimizer steps the rates were fitted to."""
    measured_seconds: float

    def seconds(self, steps: int, micro_batches: int, work: float) -> float:
        return steps * self.per_step + micro_batches * self.per_micro_batch + work * self.per_position

    def as_dict(self) -> dict[str, Any]:
        return {
            "secondsPerStep": self.per_step, "secondsPerMicroBatch": self.per_micro_batch,
            "secondsPerPosition": self.per_position, "measuredSteps": self.measured_steps,
            "measuredSeconds": self.measured_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """KeyError, TypeError or ValueError for anything but what :meth:`as_dict` wrote."""
        values = [float(data[key]) for key in ("secondsPerStep", "secondsPerMicroBatch", "secondsPerPosition")]
        if any(v < 0 for v in values) or values[2] <= 0:
            raise ValueError(f"calibration rates must be positive, got {values}")
        return cls(*values, int(data["measuredSteps"]), float(data["measuredSeconds"]))


# -- the work of a micro-batch ------------------------------------------------------------------
def head_share(model) -> float:
    """Multiply-adds of the output head per position over those of the decoder layers, from the
    model's config (a gated MLP assumed): the extra weight of a position whose logits are computed."""
    config = model.config
    config = getattr(config, "text_config", None) or config
    hidden, heads = config.hidden_size, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    layer = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + 3 * hidden * intermediate
    return config.vocab_size * hidden / (config.num_hidden_layers * layer)


def micro_batch_work(run: TrainingRun, group: list[int]) -> tuple[int, int]:
    """Token positions the loop computes for this micro-batch of ``run`` (as ``micro_batch_pass``
    counts them) and its target tokens."""
    return run.computed_positions(group), sum(run.train_data.examples[i].target_count for i in group)


# -- measuring ----------------------------------------------------------------------------------
def _full_micro_batch(run: TrainingRun) -> list[int]:
    """Records (of a seeded shuffle) that together fill one micro-batch of ``run``."""
    candidates = list(range(len(run.train_data.examples)))
    random.Random(run.config.seed).shuffle(candidates)
    chosen: list[int] = []
    for index in candidates[:SAMPLE_RECORDS]:
        if len(run.micro_batches_of([*chosen, index])) == 1:
            chosen.append(index)
    return chosen


def measure(run: TrainingRun) -> Calibration:
    """Time optimizer steps of three shapes on ``run`` (set up, not trained: its weights,
    optimizer and counters are changed and must be thrown away) and fit the three rates to
    each shape's (lower) median."""
    examples, share = run.train_data.examples, head_share(run.model)
    by_length = sorted(range(len(examples)), key=lambda i: len(examples[i]))
    full, size = _full_micro_batch(run), run.micro_batch
    split_tokens = max(max(len(examples[i]) for i in full), sum(micro_batch_work(run, [i])[0] for i in full) // SPLIT_INTO)
    shapes = {"small": ([by_length[len(by_length) // 2]], size), "full": (full, size)}
    if len(full) > 1:
        shapes["split"] = (full, dataclasses.replace(size, tokens=split_tokens))
    lr = run.config.hyperparameters.learning_rate

    def timed(indices: list[int], micro_batch) -> tuple[float, int, float]:
        run.micro_batch = micro_batch
        groups = run.micro_batches_of(indices)
        work = sum(p + share * t for p, t in map(lambda g: micro_batch_work(run, g), groups))
        started = time.perf_counter()
        run.optimizer_step(indices, lr)
        if run.placement.device.type == "cuda":
            torch.cuda.synchronize(run.placement.device)
        return time.perf_counter() - started, len(groups), work

    try:
        timed(full, size)  # warm-up: allocator, kernels and caches for the largest shape
        samples: dict[str, list[tuple[float, int, float]]] = {name: [] for name in shapes}
        spent, rounds = 0.0, 0
        while rounds < REPEATS or (spent < MIN_SECONDS and rounds < MAX_REPEATS):
            for name, (indices, micro_batch) in shapes.items():  # interleaved: a busy moment spreads over all shapes
                samples[name].append(timed(indices, micro_batch))
                spent += samples[name][-1][0]
            rounds += 1
    finally:
        run.micro_batch = size
    lower_median = {name: sorted(rows)[(len(rows) - 1) // 2] for name, rows in samples.items()}  # of two: the less disturbed
    return _fit(lower_median, rounds * len(shapes), spent)


def _fit(sample: dict[str, tuple[float, int, float]], steps: int, seconds: float) -> Calibration:
    """The three rates from a (seconds, micro-batches, work) sample of each shape. The fit
    reproduces the full micro-batch's time exactly and splits it between fixed and per-position
    costs by the small shape; timing noise can push that split anywhere, so at least
    :data:`MIN_POSITION_SHARE` of the full time stays per position and no rate goes negative."""
    t_small, _, w_small = sample["small"]
    t_full, _, w_full = sample["full"]
    most = t_full / w_full  # everything per position
    slope = (t_full - t_small) / (w_full - w_small) if w_full > 1.2 * w_small else most
    per_position = min(max(slope, MIN_POSITION_SHARE * most), most)
    fixed = t_full - per_position * w_full  # per step + per micro-batch
    per_micro_batch = fixed
    if "split" in sample and sample["split"][1] > 1:
        t_split, n_split, w_split = sample["split"]
        extra = (t_split - t_full - per_position * (w_split - w_full)) / (n_split - 1)
        per_micro_batch = min(max(extra, 0.0), fixed)
    return Calibration(fixed - per_micro_batch, per_micro_batch, per_position, steps, seconds)


def calibrate(config: TrainConfig) -> Calibration:
    """Measure on the first :data:`SAMPLE_RECORDS` records of ``config.data`` with a throwaway run
    (the model loads once more; its output folder is temporary)."""
    report = validate_dataset(config.data, [], config.kind)
    if not report.valid:
        raise DataError(report)
    with tempfile.TemporaryDirectory(prefix="tunesmith-calibration-") as folder:
        sample = Path(folder) / "sample.jsonl"
        records = read_records(config.data)
        lines = [json.dumps(record) for _, record in zip(range(SAMPLE_RECORDS), records)]
        sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
        settings = dataclasses.replace(config, data=sample, validation=[], output=Path(folder) / "run", resume=False)
        return with_throwaway_run(settings, measure)


def with_throwaway_run(config: TrainConfig, use: Callable[[TrainingRun], Any]) -> Any:
    """``use(run)`` for a run of ``config`` set up (not trained) over a temporary output folder,
    then the run's memory is released (before a real run loads the model again)."""
    with tempfile.TemporaryDirectory(prefix="tunesmith-estimate-") as folder:
        run = TrainingRun(dataclasses.replace(config, output=Path(folder) / "run", resume=False))
        try:
            run.setup()
            return use(run)
        finally:
            device = getattr(getattr(run, "placement", None), "device", None)
            del run
            gc.collect()
            if device is not None and device.type == "cuda":
                torch.cuda.empty_cache()


# -- the cache ----------------------------------------------------------------------------------
def cache_path() -> Path:
    return home() / "calibration.json"


def model_identity(source: ModelSource) -> str:
    """What decides a model's speed: its config and the names and sizes of its weight files
    (not their values, so results of the same model share a calibration)."""
    if source.kind == "builtin-gguf":
        return MICRO_SHA256[:16]
    if source.kind == "hub":
        return source.location
    if source.kind == "gguf":
        path = Path(source.location)
        return f"{path.name}:{path.stat().st_size}"
    folder = Path(source.folder())
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for weights in sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")]):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def device_name(device: torch.device) -> str:
    """The CPU's model name or the GPU's name: what a calibration is only valid on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            lines = Path("/proc/cpuinfo").read_text().splitlines()
            return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        except (OSError, StopIteration):
            return platform.processor() or platform.machine()
    return f"{device.type} {platform.machine()}"


def calibration_key(config: TrainConfig, placement: Placement, source: ModelSource) -> dict[str, str]:
    """Everything a calibration's rates depend on, readable (it is stored beside them)."""
    packed = config.packing if config.packing is not None else placement.device.type == "cuda"
    shared = (config.share_prefixes if config.share_prefixes is not None else placement.device.type == "cpu") and not packed
    return {
        "model": source.name, "modelFiles": model_identity(source), "device": f"{placement.device.type}: {device_name(placement.device)}",
        "threads": str(torch.get_num_threads()), "precision": placement.precision, "method": config.method,
        "quantize": config.quantize, "sharePrefixes": str(shared), "packing": str(packed), "torch": torch.__version__, "tunesmith": __version__,
    }


def _key_id(key: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _entries() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def load_calibration(key: dict[str, str]) -> Calibration | None:
    """The cached calibration for ``key``; None when there is none or the cache is unreadable."""
    entry = _entries().get(_key_id(key))
    try:
        return Calibration.from_dict(entry["rates"]) if isinstance(entry, dict) else None
    except (KeyError, TypeError, ValueError):
        return None


def save_calibration(key: dict[str, str], calibration: Calibration) -> None:
    """Add (or replace) ``key``'s entry; a cache that cannot be written is left alone (the
    next estimate measures again)."""
    entries = _entries()
    entries[_key_id(key)] = {"key": key, "rates": calibration.as_dict(), "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_path(), json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=2))
    except OSError:
        pass
