"""Score a model on held-out conversations: answer loss, exact match, ROUGE-L.

- Loss and perplexity on the reference answers (the same masking as training).
- Greedy exact match: the generated answer to the last user turn, whitespace-trimmed,
  equals the reference.
- ROUGE-L F1 (Google's ``rouge-score`` package) as a softer token-overlap score.

Both run on ``device`` in the precision training would use there (:func:`tunesmith.devices.place`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.datasets import DataError, DatasetKind, validate_dataset
from tunesmith.devices import place
from tunesmith.evaluation.generation import GenerationSettings, generate, model_device
from tunesmith.models.loading import load_model, load_tokenizer
from tunesmith.models.registry import resolve_model
from tunesmith.training.examples import chat_messages, read_records, tokenize_records
from tunesmith.training.loss import dataset_loss


@dataclass
class Evaluation:
    model: str
    records: int
    loss: float
    exact_match: float
    rouge_l: float
    predictions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 50.0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "records": self.records, "loss": round(self.loss, 6),
            "perplexity": round(self.perplexity, 4), "exactMatch": round(self.exact_match, 4), "rougeL": round(self.rouge_l, 4),
        }


def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def score_predictions(references: list[str], predictions: list[str]) -> tuple[float, float, list[tuple[bool, float]]]:
    """Exact-match rate, mean ROUGE-L F1, and per-item scores."""
    scorer = _rouge()
    items = []
    for reference, prediction in zip(references, predictions):
        exact = prediction.strip() == reference.strip()
        rouge = scorer.score(reference, prediction)["rougeL"].fmeasure if prediction.strip() else 0.0
        items.append((exact, rouge))
    count = max(len(items), 1)
    return sum(e for e, _ in items) / count, sum(r for _, r in items) / count, items


def evaluate(
    model_spec: str, data: str | Path, settings: GenerationSettings = GenerationSettings(), device: str = "auto",
    precision: str = "auto", loaded=None, on_batch: Callable[[int], None] | None = None,
) -> Evaluation:
    """Evaluate ``model_spec`` on labelled conversations in ``data``, on ``device`` (``auto``,
    ``cpu``, ``cuda``, ``cuda:N`` or ``mps``) in ``precision``.

    ``loaded`` may pass an already loaded ``(model, tokenizer)`` to skip loading; that model
    is used on the device it is on. Raises DeviceError for a device that is not there.
    """
    report = validate_dataset(data, kind=DatasetKind.FINE_TUNING, check_limits=False)
    if not report.valid:
        raise DataError(report)
    source = resolve_model(model_spec)
    placement = place(device, precision)
    if loaded is None:
        loaded = load_model(source, device=placement.device), load_tokenizer(source)
    model, tokenizer = loaded
    if model_device(model) != placement.device:
        placement = place(str(model_device(model)), precision)
    records = list(read_records(data))
    examples = tokenize_records(records, tokenizer, DatasetKind.FINE_TUNING, 4096).examples
    loss = dataset_loss(model, examples, tokenizer.pad_token_id, 2048, placement)
    conversations = [chat_messages(r)[:-1] for r in records]
    references = [chat_messages(r)[-1]["content"] for r in records]
    completions = generate(model, tokenizer, conversations, settings, on_batch, placement)
    exact, rouge, items = score_predictions(references, [c.text for c in completions])
    predictions = [
        {"index": i, "prompt": conv[-1]["content"], "reference": ref, "prediction": c.text, "exactMatch": e, "rougeL": round(r, 4)}
        for i, (conv, ref, c, (e, r)) in enumerate(zip(conversations, references, completions, items))
    ]
    return Evaluation(source.name, len(records), loss, exact, rouge, predictions)


def write_predictions(evaluations: list[Evaluation], path: Path) -> None:
    """One JSON line per model and record."""
    with path.open("w", encoding="utf-8") as out:
        for evaluation in evaluations:
            for row in evaluation.predictions:
                out.write(json.dumps({"model": evaluation.model, **row}, ensure_ascii=False) + "\n")
