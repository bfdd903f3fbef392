"""What a run checks and reads before any model loads (part of ``TrainingRun``): the data, the
model's name, the output folder, the tokenized records and the plan over them."""

from __future__ import annotations

from pathlib import Path

from tunesmith.advisor import TrainingPlan, plan_training
from tunesmith.datasets import DataError, ValidationReport, validate_dataset
from tunesmith.errors import TunesmithError
from tunesmith.models.registry import ModelSource, resolve_model
from tunesmith.training.examples import TokenizedData, read_records, tokenize_records


class OutputError(TunesmithError, ValueError):
    """The output folder cannot be used as asked."""


class NothingToTrainError(TunesmithError, ValueError):
    """Every training record lost its target tokens to ``max_length``."""


class RunInputs:
    """``TrainingRun``'s inputs: needs ``config``, ``world``, ``source``, ``tokenizer`` and ``train_data`` on the run."""

    def check_inputs(self) -> tuple[ValidationReport, ModelSource]:
        """Everything that can fail before a model loads: data, model name, output folder."""
        config = self.config
        report = validate_dataset(config.data, config.validation, config.kind)
        if not report.valid:
            raise DataError(report)
        source = resolve_model(config.model)
        self._check_output()
        return report, source

    def _check_output(self) -> None:
        output = self.config.output
        if output.exists() and not output.is_dir():
            raise OutputError(f"{output} exists and is not a folder")
        has_run = (output / "checkpoints").exists() or (output / "manifest.json").exists()
        if has_run and not self.config.resume:
            raise OutputError(f"{output} already holds a training run: pass --resume to continue it, or choose another --output")
        try:
            output.mkdir(parents=True, exist_ok=True)
            if self.config.private and self.world.is_main:
                output.chmod(0o700)  # closed from the start; write_results makes what it holds owner-only
            if self.world.is_main:  # one prober: ranks would race on the probe file
                probe = output / ".write-test"
                probe.write_text("")
                probe.unlink()
        except OSError as exc:
            raise OutputError(f"cannot write to {output}: {exc.strerror or exc}") from exc

    def _plan(self) -> TrainingPlan:
        """The plan over the records that will train, and every warning about them."""
        config, data = self.config, self.train_data
        if not data.examples:
            raise NothingToTrainError(
                f"none of the {data.dropped} training record(s) has answer tokens left after cutting at "
                f"{config.max_length} tokens: raise max_length"
            )
        plan = plan_training(len(data.examples), self.source.tier, config.hyperparameters, config.duplication)
        self.warnings = plan.warnings()
        if data.truncated:
            self.warnings.append(f"{data.truncated} record(s) longer than {config.max_length} tokens (max_length) were cut")
        if data.dropped:
            self.warnings.append(
                f"{data.dropped} record(s) had no answer tokens left after cutting and are not trained on; "
                f"the plan counts the {len(data.examples)} that are"
            )
        return plan

    @property
    def steps_per_epoch(self) -> int:
        return self.plan.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.plan.total_steps

    def _tokenize(self, paths: list[Path]) -> TokenizedData:
        records = (record for path in paths for record in read_records(path))
        return tokenize_records(records, self.tokenizer, self.config.kind, self.config.max_length)

