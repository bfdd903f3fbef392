"""Train until the task is learned: the quickstart's stopping rule.

The advisor plans 80 optimizer steps for the quickstart's 1,000 records on micro, and the
quickstart trains with exactly those hyperparameters, but its narrow task is learned well
before the plan ends. After every optimizer step (from ``Target.first_step`` on) the model
being trained is scored on a validation split, disjoint from the training and the test
records; once its exact match reaches ``Target.exact_match`` the run ends there as a
finished run (:meth:`tunesmith.training.TrainingRun.finish`): the results are written from
those weights and the manifest says why training ended. The test split is not looked at
until training is over.

The check is exact match without generating: a forward pass over the validation
conversations with their reference answers. Greedy decoding reproduces an answer exactly
when, at every answer token up to and including the end token, the model's most likely next
token is the reference's (given the reference before it, which is then what greedy decoding
has produced). That is one batched pass instead of an answer's worth of decoding steps per
record. It never counts an answer that generation would miss; it can miss one that
generation would count after trimming whitespace, and rounding can tip a near tie either
way; the quickstart's reported scores are generated. A check scores a few records at a time
and ends as soon as more of them have missed than the target allows, so checks while the
model is still learning the task cost a fraction of a step.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from tunesmith.training import batches
from tunesmith.training.examples import Example

if TYPE_CHECKING:
    from tunesmith.devices import Placement
    from tunesmith.training import StepInfo, TrainingRun


@dataclass(frozen=True)
class Target:
    """When the task counts as learned."""

    exact_match: float = 0.95
    """Validation exact match (0..1] that ends training."""
    records_per_pass: int = 8
    """Validation records scored per forward pass; a check ends after the first pass that puts
    the target out of reach."""

    def __post_init__(self) -> None:
        if not 0 < self.exact_match <= 1:
            raise ValueError(f"the target exact match must be in (0, 1], got {self.exact_match}")
        if self.records_per_pass < 1:
            raise ValueError(f"records_per_pass must be at least 1, got {self.records_per_pass}")

    def misses_allowed(self, records: int) -> int:
        """The most of ``records`` that may miss with the target still reached."""
        return math.floor(records * (1 - self.exact_match) + 1e-9)


@dataclass(frozen=True)
class Check:
    """One validation check between two optimizer steps."""

    step: int
    """The optimizer steps completed when it ran."""
    correct: int
    scored: int
    """Records scored: all of them, unless the check ended early with the target out of reach."""
    records: int
    seconds: float

    @property
    def complete(self) -> bool:
        return self.scored == self.records

    @property
    def exact_match(self) -> float:
        """Over the records scored."""
        return self.correct / self.scored if self.scored else 0.0


def through_first_end(example: Example, end_id: int) -> Example:
    """``example`` with its targets cut after the first target token that is ``end_id``:
    what greedy decoding must reproduce (it stops at the end token)."""
    targets, ended = [], False
    for token, target in zip(example.input_ids, example.targets):
        targets.append(target and not ended)
        ended = ended or (target and token == end_id)
    return Example(example.input_ids, targets)


def answers_reproduced(model, examples: list[Example], pad_id: int, placement: Placement | None = None) -> list[bool]:
    """For each example (one forward pass over all of them): is the model's most likely next
    token the reference at every target position, with the reference before it as context?
    With targets cut by :func:`through_first_end`, True means that greedy decoding gives
    exactly the reference answer.

    No gradients, in ``placement``'s precision (fp32 when None); the model's train/eval mode
    is restored after."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batches.collate(examples, pad_id).items()}
    ids, attention = batch["input_ids"], batch["attention_mask"]
    select = batch["targets"][:, 1:] & attention[:, 1:].bool()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), placement.autocast() if placement is not None else contextlib.nullcontext():
            hidden = model.get_decoder()(input_ids=ids, attention_mask=attention, use_cache=False).last_hidden_state
            predicted = model.get_output_embeddings()(hidden[:, :-1][select]).argmax(dim=-1)
    finally:
        model.train(was_training)
    misses = torch.zeros(len(examples), dtype=torch.long, device=device)
    misses.index_add_(0, select.nonzero()[:, 0], (predicted != ids[:, 1:][select]).long())
    return [count == 0 for count in misses.tolist()]


@dataclass
class TrainUntilLearned:
    """``finetune``'s ``on_start`` and ``on_step``: check the validation split after each step
    and end the run once the target is reached. The checks change nothing in training (no
    gradients, no random numbers, the train mode restored): the steps trained are the very
    steps of the run without them, only fewer."""

    examples: list[Example]
    """The validation records, tokenized as training tokenizes them (:meth:`of_records`)."""
    target: Target = field(default_factory=Target)
    on_check: Callable[[Check], None] | None = None
    checks: list[Check] = field(default_factory=list)
    run: TrainingRun | None = None

    @classmethod
    def of_records(cls, records: list[dict], tokenizer, **options) -> TrainUntilLearned:
        """The rule for validation ``records`` (bedrock conversations), tokenized with ``tokenizer``."""
        from tunesmith.datasets import DatasetKind
        from tunesmith.training.examples import tokenize_records

        data = tokenize_records(records, tokenizer, DatasetKind.FINE_TUNING, 1024)
        if data.dropped or data.truncated or len(data.examples) != len(records):
            raise ValueError("every validation record must keep its whole answer within 1,024 tokens")
        return cls([through_first_end(e, tokenizer.eos_token_id) for e in data.examples], **options)

    def on_start(self, run: TrainingRun) -> None:
        self.run = run

    def on_step(self, info: StepInfo) -> None:
        run = self.run
        if run is None:
            raise RuntimeError("on_start was not called: pass on_start to finetune too")
        if self.reached is not None:
            return
        check = self.check(info.step)
        self.checks.append(check)
        if self.on_check is not None:
            self.on_check(check)
        if self.reached is not None:
            run.finish(self.reason(check, info.total_steps))

    def check(self, step: int) -> Check:
        """Score the validation records a pass at a time, until the target is out of reach."""
        run = self.run
        started = time.perf_counter()
        allowed, size = self.target.misses_allowed(len(self.examples)), self.target.records_per_pass
        correct = scored = 0
        for start in range(0, len(self.examples), size):
            chunk = self.examples[start : start + size]
            results = answers_reproduced(run.model, chunk, run.tokenizer.pad_token_id, run.placement)
            correct, scored = correct + sum(results), scored + len(chunk)
            if scored - correct > allowed:
                break
        return Check(step, correct, scored, len(self.examples), time.perf_counter() - started)

    @property
    def reached(self) -> Check | None:
        """The check that ended training; None while it goes on (or when it never did)."""
        last = self.checks[-1] if self.checks else None
        return last if last is not None and last.complete and last.exact_match >= self.target.exact_match else None

    @property
    def seconds(self) -> float:
        """Time spent checking (training's own time does not include it)."""
        return sum(c.seconds for c in self.checks)

    def reason(self, check: Check, total_steps: int) -> str:
        return (f"stopped at step {check.step} of {total_steps}: validation exact match {check.exact_match:.0%} "
                f"({check.correct} of {check.records} held-out validation records) reached the target of "
                f"{self.target.exact_match:.0%}")
