"""The training loop: LoRA or full fine-tuning, and continued pre-training, of a causal LM.

Features and their trade-offs:
- Effective batch = the tier's (64 micro, 16 lite, 32 pro), reached by gradient
  accumulation over length-grouped micro-batches sized to a memory budget (``memory.py``).
- Records of a micro-batch that begin alike compute that prefix once (``shared_loss.py``), the
  CPU's default; on CUDA a micro-batch's records are packed into one row without padding
  (``packing.py``), with the attention kernel chosen by measurement (``packed_attention.py``).
- Loss on target tokens only (assistant turns, or every token for pre-training), averaged
  over the targets of the whole optimizer step; logits computed only at those positions.
- The guide's warmup (``schedule.WarmupSchedule``), then the set learning rate.
- Any device (``devices.place``): CUDA, MPS or the CPU, with the precision that suits it
  (bf16 autocast on Ampere+ GPUs and CPUs with native bf16, fp16 with loss scaling on older
  GPUs, fp32 elsewhere, or whatever ``precision`` asks for).
- Data parallel over N ranks started by torchrun (``distributed.py``): the step's records
  are shared out, gradients summed with one all-reduce, and the run is the 1-process run
  up to float rounding: same records per step, same loss normalisation, same warmup.
- The step arithmetic is the advisor's :class:`TrainingPlan`, built once from the tokenized
  examples (records left with no target tokens are not counted), so the advice, the loop
  and the manifest agree.
- Checkpoints at every epoch end (and every ``save_every`` steps) carry weights, optimizer
  and RNG state: a resumed run repeats the uninterrupted one exactly.
- Stopping (``stop()``, SIGINT or SIGTERM) takes effect before the next micro-batch: the
  step in progress is thrown away (gradients zeroed, RNG restored, no optimizer step) and a
  checkpoint of the last completed step is kept. Up to one step of work is lost; in return
  a stop is quick and resuming stays exact.
- Steps count from 1 (step N is the N-th optimizer step; ``checkpoints/step-N`` holds the
  state after it); epochs count from 0. Only the hosted-format CSVs write ``N - 1``
  (``metrics.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tunesmith.models.loading import load_model, load_tokenizer
from tunesmith.training import batches, distributed
from tunesmith.training.adapter_init import initialize_adapter
from tunesmith.training.attention import choose_attention
from tunesmith.training.checkpoints import (
    capture_rng,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    restore_rng,
    save_checkpoint,
)
from tunesmith.training.config import TrainConfig
from tunesmith.training.fast_lora import fold_lora_products
from tunesmith.training.frozen import store_frozen_linears_in
from tunesmith.training.loss import dataset_loss
from tunesmith.training.memory import fit_micro_batch
from tunesmith.training.metrics import MetricsWriter
from tunesmith.training.micro_batching import MicroBatching
from tunesmith.training.quantization import check_quantization, load_quantized
from tunesmith.training.run_inputs import RunInputs
from tunesmith.training.schedule import WarmupSchedule
from tunesmith.training.sharding import check_sharding, full_optimizer_state, full_weights, load_sharded_checkpoint, shard_model
from tunesmith.training.shared_loss import supports_shared_prefix
from tunesmith.training.state import RunState, StepInfo
from tunesmith.training.stopping import stop_on_signals
from tunesmith.training.validation_watch import ValidationWatch


@dataclasses.dataclass(frozen=True)
class StepStart:
    """An optimizer step about to run (:meth:`TrainingRun.begin_step`)."""

    step: int
    epoch: int
    indices: list[int]
    lr: float
    started: float
    """``time.perf_counter()`` when it began."""
    tokens_before: int


class TrainingRun(RunInputs, MicroBatching):
    """One run: ``setup()``, then ``train()``; ``results.write_results(run)`` if it was not stopped.

    :func:`tunesmith.training.finetune` does exactly that; call it rather than this class.
    """

    def __init__(
        self, config: TrainConfig, on_step: Callable[[StepInfo], None] | None = None, stop: Callable[[], bool] | None = None
    ):
        if distributed.restarted_by_torchrun() and latest_checkpoint(config.output) is not None:
            config = dataclasses.replace(config, resume=True)  # torchrun restarted the ranks: go on from the checkpoint
        self.config = config
        self.on_step = on_step or (lambda info: None)
        self.stop = stop or (lambda: False)
        self.world = distributed.world_from_environment()
        self.state = RunState()
        self.warnings: list[str] = []
        self._stop_requested = False
        self._checkpointed_step: int | None = None
        self.finished_early: str | None = None
        """Why the run ended before its last planned step, when :meth:`finish` ended it."""
        self._epoch_batches: dict[int, list[list[int]]] = {}

    # -- setup ------------------------------------------------------------------------------
    def setup(self) -> None:
        """Everything before the first step: :meth:`prepare`, :meth:`build_model`, :meth:`start`."""
        self.prepare()
        self.build_model()
        self.start()

    def prepare(self) -> None:
        """The data side, no model: device and precision, checked inputs, tokens and the plan."""
        config = self.config
        self.placement = distributed.placement_for(config.device, config.precision, self.world)
        check_quantization(config.quantize, self.placement, config.method)
        check_sharding(config.shard, config.method, self.world)
        self.report, self.source = self.check_inputs()
        self.tokenizer = load_tokenizer(self.source)
        self.train_data = self._tokenize([config.data])
        self.token_ids = [e.input_ids for e in self.train_data.examples]
        self.valid_data = self._tokenize(config.validation) if config.validation else None
        self.plan = self._plan()

    def build_model(self) -> None:
        """This run's own model on its device: the base, its attention, LoRA (seeded with the
        run's seed just before the adapters are made) and the fast paths."""
        config = self.config
        distributed.join(self.world, self.placement.device)
        if self.placement.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.placement.device)  # the summary's peak is this run's
        torch.manual_seed(config.seed)
        model = load_model(self.source) if config.quantize == "none" else load_quantized(self.source, config.quantize, self.placement)
        self.attention = choose_attention(model, self.placement.device)
        if config.method == "lora":
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=config.lora.rank, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                target_modules="all-linear", task_type="CAUSAL_LM",
            )
            model = get_peft_model(model, lora)
            initialize_adapter(model, "default", config.seed)  # the seed and each layer's name decide it (adapter_init.py)
        model.to(self.placement.device)
        low = self.placement.autocast_dtype if config.method == "lora" and config.quantize == "none" else None
        self.frozen_dtype = low if low is not None and store_frozen_linears_in(model, low) else None
        if config.method == "lora" and not config.shard:
            fold_lora_products(model)
        if config.shard:
            shard_model(model, self.world, self.placement.device)
        model.train()
        self.model = model
        self.named_trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
        on_cuda = self.placement.device.type == "cuda"
        self.packing = (config.packing if config.packing is not None else on_cuda) and not config.shard
        wanted = config.share_prefixes if config.share_prefixes is not None else self.placement.device.type == "cpu"
        self.share_prefixes = wanted and not self.packing and not config.shard and supports_shared_prefix(model)
        self.micro_batch = fit_micro_batch(
            model, self.placement, [len(e) for e in self.train_data.examples], self.attention == "eager",
            config.max_memory, config.micro_batch_tokens,
        )
        self.attention_seconds: dict[str, float | None] = {}
        if self.packing and on_cuda:
            self.attention, self.attention_seconds = self._choose_packed_attention()

    def start(self) -> None:
        """The training state over the model :meth:`build_model` made (or one a group of jobs
        shares, which sets ``model``, ``named_trainable``, ``attention``, ``frozen_dtype``,
        ``packing``, ``share_prefixes``, ``micro_batch`` and ``attention_seconds`` itself): the
        optimizer, the schedule, metrics, a resumed checkpoint, and the ``start`` event."""
        config = self.config
        on_cuda = self.placement.device.type == "cuda"
        self.trainable = list(self.named_trainable.values())
        if not config.shard:
            self.world.broadcast_parameters(self.trainable)
        # Fused AdamW: one kernel for every parameter's update on a GPU rather than a few per tensor.
        self.optimizer = torch.optim.AdamW(self.trainable, lr=config.hyperparameters.learning_rate, weight_decay=0.0,
                                           fused=on_cuda or None)
        self.scaler = torch.amp.GradScaler(self.placement.device.type) if self.placement.needs_grad_scaler else None
        self.schedule = WarmupSchedule(config.hyperparameters.learning_rate, config.hyperparameters.learning_rate_warmup_steps)
        self.warnings = [*self.placement.warnings, *self.warnings, *filter(None, [self.micro_batch.warning])]
        self.metrics = MetricsWriter(config.output, enabled=self.world.is_main)
        checkpoint = latest_checkpoint(config.output) if config.resume else None
        self.watch = ValidationWatch(config.early_stopping_patience)
        if checkpoint is not None:
            load = load_sharded_checkpoint if config.shard else load_checkpoint
            saved = load(checkpoint, self.model if config.shard else self.named_trainable, self.optimizer, rank=self.world.rank)
            self.state = RunState(
                step=saved["step"], tokens=saved["tokens"], padded_tokens=saved["padded_tokens"], shared_tokens=saved.get("shared_tokens", 0),
                elapsed_s=saved["elapsed_s"], last_validation_loss=saved.get("last_validation_loss"),
                history=saved["history"],
            )
            self._checkpointed_step = self.state.step
            self.watch = ValidationWatch(config.early_stopping_patience, saved.get("validation_watch"))
        self.metrics.start(self.state.history["training"], self.state.history["validation"])
        self.metrics.event(
            "start", resumed_from=self.state.step, total_steps=self.total_steps, model=self.source.name, warnings=self.warnings,
            **self.placement.describe(), world_size=self.world.size, attention=self.attention,
            micro_batch_tokens=self.micro_batch.tokens, micro_batch_reason=self.micro_batch.reason,
            memory_budget_mb=self.micro_batch.budget_mb, estimated_peak_mb=self.micro_batch.estimated_peak_mb,
            shared_prefixes=self.share_prefixes, packing=self.packing,
            attention_seconds={k: None if v is None else round(v, 5) for k, v in self.attention_seconds.items()},
        )

    # -- the loop ---------------------------------------------------------------------------
    def _stop_now(self) -> bool:
        if not self._stop_requested and self.stop():
            self._stop_requested = True
        return self._stop_requested

    def optimizer_step(self, indices: list[int], lr: float) -> float | None:
        """Forward and backward over this rank's share of the step, summed gradients, then one
        optimizer step; the step's mean loss per target token over all ranks. A stop before
        any micro-batch (agreed by all ranks) throws the partial step away and returns None,
        leaving weights, optimizer, RNG and counters as they were after the previous step: a
        run resumed from there repeats this step exactly."""
        examples, state, world, device = self.train_data.examples, self.state, self.world, self.placement.device
        targets = sum(examples[i].target_count for i in indices)  # over all ranks: every rank knows the whole step
        groups = self.micro_batches_of(distributed.share(indices, examples, world))
        rounds = max(self._micro_batch_count(indices, rank) for rank in range(world.size))
        rng = capture_rng()
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = lr
        step_loss, tokens, padded, shared, sharded = None, 0, 0, 0, self.config.shard
        for round_ in range(rounds):
            if world.any(self._stop_now(), device):
                self.optimizer.zero_grad(set_to_none=True)
                restore_rng(rng)  # dropout masks drawn for the discarded micro-batches
                return None
            if round_ >= len(groups) and not sharded:
                continue  # this rank's share is done; it still votes on stopping with the others
            # Sharded, every forward and backward is a collective: a rank with nothing left runs a zero-weighted batch.
            group, weight = (groups[round_], 1.0) if round_ < len(groups) else ([indices[0]], 0.0)
            weight *= world.size if sharded else 1  # FSDP averages over ranks; the step wants the sum
            if sharded:
                self.model.set_requires_gradient_sync(round_ == rounds - 1)  # reduce-scatter once, after the last
            with self.placement.autocast():
                loss, computed, saved = self.micro_batch_forward(group)
            scaled = loss * weight / targets
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            if round_ < len(groups):
                real = sum(len(examples[i]) for i in group)
                step_loss = loss.detach().float() if step_loss is None else step_loss + loss.detach().float()
                tokens, padded = tokens + real, padded + computed - (real - saved)
                shared += saved
        loss_sum = step_loss.item() if step_loss is not None else 0.0  # the step's one host sync
        if not sharded:
            world.sum_gradients(self.trainable)
        loss_sum, tokens, padded, shared = world.sum([loss_sum, tokens, padded, shared], device)
        state.tokens, state.padded_tokens = state.tokens + int(tokens), state.padded_tokens + int(padded)
        state.shared_tokens += int(shared)
        self.apply_gradients()
        return loss_sum / targets

    def apply_gradients(self) -> None:
        """Clip the step's summed gradients, take the optimizer step, and clear them."""
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.trainable, self.config.max_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def validation_loss(self) -> float | None:
        """Rank 0 alone computes it (the others wait at the next step's first all-reduce)."""
        if not self.valid_data or not self.valid_data.examples or not self.world.is_main:
            return None
        return dataset_loss(
            self.model, self.valid_data.examples, self.tokenizer.pad_token_id, self.micro_batch.tokens, self.placement
        )

    def train(self) -> RunState:
        """Train from the current step to the plan's last, or until a stop; returns the state."""
        with stop_on_signals(self.request_stop, enabled=not self.world.distributed):
            while self.wants_step():
                step = self.begin_step()
                loss = self.optimizer_step(step.indices, step.lr)
                if loss is None:
                    self._stopped(discarded_step=step.step)
                    break
                self.end_step(step, loss)
        if not self.state.stopped:
            self._select_best()
        return self.state

    def wants_step(self) -> bool:
        """Steps are left, and neither early stopping nor :meth:`finish` ended the run."""
        return self.state.step < self.total_steps and not self.watch.should_stop and self.finished_early is None

    def begin_step(self) -> StepStart:
        """The next optimizer step: its number, epoch, records and learning rate; its clock starts."""
        config, state = self.config, self.state
        epoch, index = divmod(state.step, self.steps_per_epoch)
        if epoch not in self._epoch_batches:
            n, size = len(self.train_data.examples), self.plan.effective_batch_size
            self._epoch_batches = {epoch: batches.step_batches(n, config.duplication, size, epoch, config.seed)}
        step = state.step + 1
        return StepStart(step, epoch, self._epoch_batches[epoch][index], self.schedule(step), time.perf_counter(), state.tokens)

    def end_step(self, step: StepStart, loss: float) -> None:
        """After the optimizer step of ``step``: metrics, the ``step`` event, validation and
        checkpoints due, then ``on_step``."""
        config, state = self.config, self.state
        state.step = step.step
        self.metrics.training(step.step, step.epoch, loss)
        state.history["training"] = self.metrics.training_rows
        seconds = time.perf_counter() - step.started
        state.elapsed_s += seconds
        planned = self.train_data.tokens * config.duplication * config.hyperparameters.epoch_count
        info = StepInfo(
            step.step, self.total_steps, step.epoch, loss, step.lr, (state.tokens - step.tokens_before) / seconds,
            state.elapsed_s, state.elapsed_s / state.tokens * max(0, planned - state.tokens),
        )
        self.metrics.event(
            "step", step=step.step, epoch=step.epoch, loss=round(loss, 6), lr=step.lr,
            tokens_per_s=round(info.tokens_per_s, 1), elapsed_s=round(state.elapsed_s, 2), eta_s=round(info.eta_s, 1),
        )
        info.validation_loss = self._after_step(step.epoch)
        self.on_step(info)

    def _select_best(self) -> None:
        """With early stopping, the model becomes the best validation checkpoint's weights."""
        best = self.watch.best_step
        if best is not None and best != self.state.step:
            load_weights(checkpoint_path(self.config.output, best), self.named_trainable)
            self.metrics.event("selected", step=best, validation_loss=round(self.watch.early.best_loss, 6))

    def _stopped(self, discarded_step: int) -> None:
        """Keep a checkpoint of the last completed step (if one completed) and record the stop."""
        self.state.stopped = True
        if self.state.step > 0 and self._checkpointed_step != self.state.step:
            self.save_checkpoint()
        self.metrics.event("stopped", step=self.state.step, discarded_step=discarded_step)

    def _after_step(self, epoch: int) -> float | None:
        """Validation and checkpoints due after this step; the validation loss if computed."""
        config, state = self.config, self.state
        epoch_end = state.step % self.steps_per_epoch == 0
        loss = None
        if epoch_end or (config.eval_every and state.step % config.eval_every == 0):
            loss = self.validation_loss()
            if self.world.distributed and config.early_stopping_patience:
                loss = distributed.broadcast_from_main(self.world, loss)  # every rank stops at the same step
            if loss is not None:
                self.metrics.validation(state.step, epoch, loss)
                state.history["validation"] = self.metrics.validation_rows
                state.last_validation_loss = loss
                self.metrics.event("validation", step=state.step, epoch=epoch, loss=round(loss, 6))
                prediction = self.watch.observe(state.step, epoch, loss, epoch_end, self.steps_per_epoch)
                if prediction is not None:
                    self.metrics.event("learning_curve", **prediction.as_dict())
        if epoch_end or self.watch.is_best(state.step) or (config.save_every and state.step % config.save_every == 0):
            self.save_checkpoint()
        return loss

    def save_checkpoint(self) -> Path | None:
        """Every rank hands rank 0 its RNG state; rank 0 writes the checkpoint (returns None elsewhere)."""
        state = self.state
        rng_of_ranks = self.world.gather(capture_rng())
        if self.config.shard:  # every rank takes part in gathering the full tensors
            weights, optimizer_state = full_weights(self.model), full_optimizer_state(self.model, self.optimizer)
        else:  # under the names a run of its own gives them (a job of a group trains one adapter of several)
            weights, optimizer_state = {name: p.detach().contiguous().clone() for name, p in self.named_trainable.items()}, None
        self._checkpointed_step = state.step
        if not self.world.is_main:
            return None
        saved = {
            "tokens": state.tokens, "padded_tokens": state.padded_tokens, "shared_tokens": state.shared_tokens, "elapsed_s": state.elapsed_s,
            "last_validation_loss": state.last_validation_loss, "history": state.history, "world_size": self.world.size,
            "sharded": self.config.shard, "validation_watch": self.watch.to_state(),
        }
        path = save_checkpoint(self.config.output, state.step, self.model, self.optimizer, saved, self.config.keep_checkpoints,
                               rng_of_ranks, weights, optimizer_state, protect=self.watch.best_step)
        self.metrics.event("checkpoint", step=state.step, path=str(path))
        return path

    def finish(self, reason: str) -> None:
        """End training after the step just completed as a finished run (for ``on_step``, which
        runs between steps): unlike a stop, no step is thrown away and the results are written
        from the current weights; the manifest's result gives ``reason`` as ``finishedEarly``.
        Under torchrun every rank must call it after the same step."""
        self.finished_early = reason

    def request_stop(self) -> None:
        """Stop before the next micro-batch, as ``stop()`` returning True does (for other threads)."""
        self._stop_requested = True
