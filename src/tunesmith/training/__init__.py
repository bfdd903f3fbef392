"""The training engine: data to tokens, the loop, checkpoints, metrics and results."""

from tunesmith.training.config import LoraSettings, TrainConfig
from tunesmith.training.loop import DataError, OutputError, StepInfo, TrainingRun
from tunesmith.training.results import write_results

__all__ = ["DataError", "LoraSettings", "OutputError", "StepInfo", "TrainConfig", "TrainingRun", "train", "write_results"]


def train(config: TrainConfig, on_step=None) -> dict:
    """Run a whole training job and return its manifest (stopped runs return without results)."""
    run = TrainingRun(config, on_step)
    run.setup()
    state = run.train()
    if state.stopped:
        return {"stopped": True, "step": state.step, "output": str(config.output)}
    return write_results(run)
