"""Many LoRA jobs on one base model, trained together: one frozen base, one adapter per job.

A small model's optimizer step is bound by kernel launches, not arithmetic, so K jobs that
share a base can run their steps in one forward and backward: the base's matmuls see a
K-times-larger batch, and each job's adapter applies to its own records only
(``segments.py``). Research systems (mLoRA/ASPEN for training, Punica and S-LoRA
for serving) do this; here it is how a group of a service's jobs, or of a search's trials,
trains.

Each job is a :class:`~tunesmith.training.loop.TrainingRun` of its own in everything but the
model: its data, plan, epochs, duplication, learning rate and warmup, optimizer state, seed
(its adapter's initial weights and its record order), metrics, events, checkpoints, early
stopping, ``on_step`` and ``stop``, and its result folder, which is exactly what it would write
alone (an adapter saved under PEFT's usual name, a merged model, the manifest). Its losses and
weights are those of training it alone up to float rounding: the jobs' losses are summed for
one backward pass, each divided by its own step's target count, and no gradient crosses from
one job's adapter to another's (``tests/test_jobs_together.py``: within 1e-4 in fp32).

- Jobs join and leave at step boundaries (:meth:`JobsTogether.add`, and a job leaves when it
  finishes, stops early or is stopped); a group's step trains every job present one step of
  its own, whatever step each is at.
- A stop (``stop()`` returning True, or :meth:`JobsTogether.stop`) takes effect at the end of
  the step in progress, which completes: the job keeps a checkpoint of it and leaves.
- A job whose data or settings are unusable fails in :meth:`JobsTogether.add` and never
  joins: its neighbours do not notice.
- With LoRA dropout the masks are drawn from the group's random stream, so they differ from
  a run alone (they are as random); without dropout (the default) nothing random runs.

Not for: full fine-tuning, QLoRA, FSDP, torchrun ranks or fp16 with loss scaling (each of
those trains alone).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tunesmith.errors import ConfigError
from tunesmith.multi_adapter.batches import MixedBatch, lay_out, mixed_micro_batches
from tunesmith.multi_adapter.segments import Segments, adapter_segments, install_segmented_forward
from tunesmith.training.adapter_init import initialize_adapter
from tunesmith.training.attention import choose_attention
from tunesmith.training.checkpoints import capture_rng, restore_rng
from tunesmith.training.config import TrainConfig
from tunesmith.training.frozen import store_frozen_linears_in
from tunesmith.training.head_loss import head_cross_entropy
from tunesmith.training.loop import StepInfo, TrainingRun
from tunesmith.training.memory import fit_micro_batch
from tunesmith.training.packed_attention import BOUNDARY_IMPLEMENTATIONS, choose_packed_attention, set_attention
from tunesmith.training.results import write_results
from tunesmith.training.run import RunResult


class GroupedRun(TrainingRun):
    """A job of a group: a :class:`TrainingRun` whose model is the group's, trained through its adapter."""

    adapter: str

    def validation_loss(self) -> float | None:
        with adapter_segments(Segments.single(self.adapter)):
            return super().validation_loss()


def _lora_config(config: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(r=config.lora.rank, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")


@dataclass
class JobOutcome:
    """How a job of the group ended: its result, or the error that kept it out."""

    name: str
    result: RunResult | None = None
    error: BaseException | None = None


class JobsTogether:
    """A group of LoRA jobs on one base model (module docstring). ``add`` jobs, then :meth:`run`
    (or :meth:`step` at a time, adding jobs between steps)."""

    def __init__(self, stacked: bool | None = None, packing: bool | None = None, attention: str | None = None):
        """``stacked``/``packing``: how adapters apply and records batch (``segments.py``,
        ``packing``); default: both on CUDA, neither on the CPU. ``attention``: the attention
        implementation for packed rows; default: on CUDA the fastest of those the GPU offers,
        timed on the first job's first micro-batch (``training/packed_attention.py``), else the
        model's own."""
        self._stacked, self._packing, self._attention = stacked, packing, attention
        self.model = None
        self.jobs: dict[str, GroupedRun] = {}
        self.outcomes: dict[str, JobOutcome] = {}
        self._stops: set[str] = set()
        self._on_leave: dict[str, Callable[[JobOutcome], None] | None] = {}
        self._count = 0
        self.steps = 0
        """Group steps taken (each trains every job present one step)."""
        self.training_seconds = 0.0
        """Time in forward, backward and optimizer steps (not in joining, validation, checkpoints or results)."""

    # -- joining ------------------------------------------------------------------------------
    def add(self, config: TrainConfig, on_step: Callable[[StepInfo], None] | None = None,
            stop: Callable[[], bool] | None = None, name: str | None = None,
            on_start: Callable[[TrainingRun], None] | None = None, on_leave: Callable[[JobOutcome], None] | None = None) -> str:
        """Prepare a job and add its adapter; it trains from the next group step. Raises what
        ``TrainingRun.prepare`` raises for its data, model or settings (and ConfigError for a
        job that cannot train in this group), leaving the group as it was.

        ``on_step`` and ``stop`` are ``finetune``'s; ``on_start(run)`` is called once the job
        is set up, ``on_leave(outcome)`` once it has left (finished, stopped or failed) and
        its results are written. An exception in a job's callbacks fails that job alone."""
        name = name or f"job{self._count}"
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ConfigError(f"job name {name!r}: letters, digits, - and _ only (it names the job's adapter)")
        if name in self.jobs or name in self.outcomes:
            raise ConfigError(f"a job named {name!r} is already in this group")
        run = GroupedRun(config, on_step, stop)
        run.prepare()
        self._check_fits(run)
        if self.model is None:
            self._build(run, name)
        else:
            self.model.add_adapter(name, _lora_config(config))
        initialize_adapter(self.model, name, config.seed)  # as TrainingRun.build_model does, in fp32 whatever the base's dtype
        self._count += 1
        first = not self.jobs and not self.outcomes
        try:
            self._attach(run, name)
            if first and self.packed:
                self._choose_attention(run, name)
        except BaseException:  # e.g. an unreadable checkpoint to resume from: the group goes on without it
            self.jobs.pop(name, None)
            if self.jobs:
                self.model.base_model.set_adapter(next(iter(self.jobs)))
                self.model.delete_adapter(name)
                self._all_adapters_train()
            raise
        self._on_leave[name] = on_leave
        if on_start is not None:
            try:
                on_start(run)
            except Exception as exc:  # the job's own callback: it fails alone
                self._fail(name, exc)
        return name

    def _check_fits(self, run: GroupedRun) -> None:
        config = run.config
        if config.method != "lora" or config.quantize != "none" or config.shard or run.world.distributed:
            raise ConfigError("only LoRA jobs without quantization, --shard or torchrun train in a group: run this job alone")
        if run.placement.needs_grad_scaler:
            raise ConfigError("fp16 with loss scaling trains alone: one scaler per job would be needed")
        if self.model is not None:
            if (run.source.location, run.source.name) != (self.source.location, self.source.name):
                raise ConfigError(f"job model {run.source.name} is not this group's base ({self.source.name})")
            if (run.placement.device, run.placement.precision) != (self.placement.device, self.placement.precision):
                raise ConfigError(f"job on {run.placement.device} in {run.placement.precision}, the group on "
                                  f"{self.placement.device} in {self.placement.precision}")

    def _build(self, run: GroupedRun, name: str) -> None:
        from peft import get_peft_model

        from tunesmith.models.loading import load_model

        placement = run.placement
        if placement.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(placement.device)
        model = load_model(run.source)
        self.attention = choose_attention(model, placement.device)
        model = get_peft_model(model, _lora_config(run.config), adapter_name=name)
        model.to(placement.device)
        low = placement.autocast_dtype
        self.frozen_dtype = low if low is not None and store_frozen_linears_in(model, low) else None
        from peft.tuners.lora.layer import LoraLayer

        layers = sum(isinstance(m, LoraLayer) for m in model.modules())
        if install_segmented_forward(model) != layers:
            raise ConfigError(f"{run.source.name}: some LoRA layers are not over a plain nn.Linear, so jobs cannot share "
                              "this base: train them one at a time")
        model.train()
        self.model, self.placement, self.source = model, placement, run.source
        on_cuda = placement.device.type == "cuda"
        self.packed = self._packing if self._packing is not None else on_cuda
        self.stacked = self._stacked if self._stacked is not None else on_cuda

    def _choose_attention(self, run: GroupedRun, name: str) -> None:
        """The packed rows' attention: the one asked for, or on CUDA the fastest, timed on the
        first job's first micro-batch (weights, gradients and random state left as they were)."""
        if self._attention is not None:
            set_attention(self.model, self._attention)
            self.attention = run.attention = self._attention
            return
        if self.placement.device.type != "cuda":
            return
        first = run.micro_batches_of(run.begin_step().indices)[0]
        examples = {name: run.train_data.examples}
        batch_of = {}

        def step() -> None:
            boundaries = self.model.config._attn_implementation in BOUNDARY_IMPLEMENTATIONS
            if boundaries not in batch_of:
                batch_of[boundaries] = lay_out([(name, i) for i in first], examples, run.tokenizer.pad_token_id, True,
                                               self.stacked, boundaries).to(self.placement.device)
            with self.placement.autocast():
                loss = self._forward(batch_of[boundaries])[name]
            loss.backward()
            self.model.zero_grad(set_to_none=True)

        rng = capture_rng()
        try:
            self.attention, run.attention_seconds = choose_packed_attention(self.model, self.placement.device,
                                                                            self.placement.precision, step)
        finally:
            restore_rng(rng)
        run.attention = self.attention

    def _all_adapters_train(self) -> None:
        """PEFT's ``add_adapter`` and ``delete_adapter`` leave only the active adapter
        trainable; every job's adapter trains here."""
        for run in self.jobs.values():
            for p in run.named_trainable.values():
                p.requires_grad_(True)

    def _adapter_parameters(self, name: str) -> dict[str, torch.nn.Parameter]:
        """Adapter ``name``'s weights under the names a run of its own gives them (adapter ``default``)."""
        from peft.tuners.lora.layer import LoraLayer

        found = {}
        for path, module in self.model.named_modules():
            if isinstance(module, LoraLayer) and name in module.lora_A:
                found[f"{path}.lora_A.default.weight"] = module.lora_A[name].weight
                found[f"{path}.lora_B.default.weight"] = module.lora_B[name].weight
        return found

    def _attach(self, run: GroupedRun, name: str) -> None:
        params = self._adapter_parameters(name)
        for p in params.values():
            p.requires_grad_(True)
        run.adapter = name
        run.model, run.attention, run.frozen_dtype = self.model, self.attention, self.frozen_dtype
        run.named_trainable = params
        run.packing, run.share_prefixes, run.attention_seconds = self.packed, False, {}
        self.jobs[name] = run
        self._all_adapters_train()
        self._fit_micro_batch()
        run.start()

    def _fit_micro_batch(self) -> None:
        """One micro-batch size for the group, over every job's records (and its own settings)."""
        runs = list(self.jobs.values())
        first = runs[0].config
        lengths = [len(e) for run in runs for e in run.train_data.examples]
        self.micro_batch = fit_micro_batch(self.model, self.placement, lengths, self.attention == "eager",
                                           first.max_memory, first.micro_batch_tokens)
        for run in runs:
            run.micro_batch = self.micro_batch

    # -- leaving ------------------------------------------------------------------------------
    def stop(self, name: str) -> None:
        """Stop job ``name`` at the end of the step in progress (or before the next)."""
        self._stops.add(name)

    def _leave(self, name: str) -> None:
        """Job ``name`` is done (finished, stopped or stopped early): its results, then its slot."""
        run = self.jobs[name]
        try:
            manifest = None
            if not run.state.stopped:
                run._select_best()
                run.model = self._standalone(run)
                run.frozen_dtype = None  # the standalone model's base is the fp32 original: results merge into it as they are
                manifest = write_results(run)
            outcome = JobOutcome(name, RunResult(run.state.stopped, manifest, run.plan, run.state, list(run.warnings), run.config.output))
        except Exception as exc:  # writing one job's results fails that job alone
            outcome = JobOutcome(name, error=exc)
        self._remove(name, outcome)

    def _fail(self, name: str, error: BaseException) -> None:
        self._remove(name, JobOutcome(name, error=error))

    def _remove(self, name: str, outcome: JobOutcome) -> None:
        self.jobs.pop(name)
        self.outcomes[name] = outcome
        if self.jobs:  # the last adapter stays: PEFT keeps at least one
            self.model.base_model.set_adapter(next(iter(self.jobs)))  # PEFT warns when the active adapter is deleted
            self.model.delete_adapter(name)
            self._all_adapters_train()
        callback = self._on_leave.pop(name, None)
        if callback is not None:
            try:
                callback(outcome)
            except Exception as exc:  # the job's own callback
                if outcome.error is None:
                    outcome.error = exc

    def _standalone(self, run: GroupedRun):
        """The job's adapter over a fresh copy of the base, named as a run alone names it (for its results)."""
        from peft import get_peft_model

        from tunesmith.models.loading import load_model

        model = get_peft_model(load_model(run.source), _lora_config(run.config))
        weights = {n: p.detach().to("cpu", torch.float32) for n, p in run.named_trainable.items()}
        own = dict(model.named_parameters())
        with torch.no_grad():
            for n, tensor in weights.items():
                own[n].copy_(tensor)
        return model

    # -- training -----------------------------------------------------------------------------
    def _done(self, run: GroupedRun) -> bool:
        return run.state.stopped or not run.wants_step()

    def step(self) -> None:
        """One group step: every job present trains one optimizer step of its own; jobs that
        finish, stop early or are stopped leave afterwards."""
        for name, run in list(self.jobs.items()):
            try:
                stopping = name in self._stops or run.stop()
            except Exception as exc:  # the job's own callback
                self._fail(name, exc)
                continue
            if stopping or self._done(run):  # done already: resumed from its last checkpoint, or stopped early
                self._stops.discard(name)
                self._end(name, stopped=stopping and not self._done(run))
        if not self.jobs:
            return
        started = time.perf_counter()
        starts = {name: run.begin_step() for name, run in self.jobs.items()}
        for name, run in self.jobs.items():
            for group in run.optimizer.param_groups:
                group["lr"] = starts[name].lr
        examples = {name: run.train_data.examples for name, run in self.jobs.items()}
        targets = {name: sum(examples[name][i].target_count for i in s.indices) for name, s in starts.items()}
        items = [(name, i) for name, s in starts.items() for i in s.indices]
        pad = next(iter(self.jobs.values())).tokenizer.pad_token_id
        losses: dict[str, torch.Tensor] = {}
        computed = dict.fromkeys(self.jobs, 0)
        for group in mixed_micro_batches(items, examples, self.micro_batch.tokens, self.packed, list(self.jobs)):
            boundaries = self.packed and self.attention in BOUNDARY_IMPLEMENTATIONS
            batch = lay_out(group, examples, pad, self.packed, self.stacked, boundaries).to(self.placement.device)
            with self.placement.autocast():
                parts = self._forward(batch)
            sum(part / targets[name] for name, part in parts.items()).backward()
            for name, part in parts.items():
                losses[name] = part.detach().float() if name not in losses else losses[name] + part.detach().float()
                computed[name] += batch.computed * batch.tokens[name] // sum(batch.tokens.values())  # the shared positions, shared out
        for name, run in self.jobs.items():
            real = sum(len(examples[name][i]) for i in starts[name].indices)
            run.state.tokens += real
            run.state.padded_tokens += max(0, computed[name] - real)
            run.apply_gradients()
        step_losses = {name: loss.item() / targets[name] for name, loss in losses.items()}  # the step's one host sync
        self.training_seconds += time.perf_counter() - started
        for name, run in list(self.jobs.items()):
            try:
                run.end_step(starts[name], step_losses[name])
            except Exception as exc:  # its on_step, checkpoint or validation: the job fails alone
                self._fail(name, exc)
        self.steps += 1
        for name, run in list(self.jobs.items()):
            if name in self.jobs and (name in self._stops or self._done(run)):
                self._end(name, stopped=name in self._stops and not self._done(run))
                self._stops.discard(name)

    def _end(self, name: str, stopped: bool) -> None:
        """Job ``name`` leaves: stopped (a checkpoint of its last step kept), or done (its results written)."""
        if stopped:
            try:
                self.jobs[name]._stopped(discarded_step=self.jobs[name].state.step + 1)
            except Exception as exc:  # e.g. its checkpoint could not be written: it fails alone
                self._fail(name, exc)
                return
        self._leave(name)

    def _forward(self, batch: MixedBatch) -> dict[str, torch.Tensor]:
        """Each job's summed target loss over this micro-batch."""
        inputs = {k: v for k, v in batch.inputs.items() if v is not None or k == "attention_mask"}
        with adapter_segments(batch.segments):
            hidden = self.model.get_decoder()(**inputs, use_cache=False).last_hidden_state
        flat = hidden.reshape(-1, hidden.shape[-1])
        return {
            name: head_cross_entropy(self.model, flat.index_select(0, batch.predict_at[name]), batch.labels[name])
            for name in batch.segments.adapters
        }

    def run(self, until: Callable[[JobsTogether], bool] | None = None) -> dict[str, JobOutcome]:
        """Step until every job has left (or ``until(self)`` is True); the outcomes by name."""
        started = time.perf_counter()
        while self.jobs and not (until and until(self)):
            self.step()
        self.seconds = time.perf_counter() - started
        return self.outcomes
