"""The training engine: data to tokens, the loop, checkpoints, metrics and results.

:func:`finetune` is the one way to run training; every interface calls it and differs only
in what it does with the :class:`RunResult`. Names load on first use, so reading a
:class:`TrainConfig` (for command-line flags, say) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunesmith.datasets import DataError
    from tunesmith.training.advised import advised_config
    from tunesmith.training.config import LoraSettings, TrainConfig
    from tunesmith.training.loop import TrainingRun
    from tunesmith.training.run import RunResult, finetune
    from tunesmith.training.run_inputs import OutputError
    from tunesmith.training.state import RunState, StepInfo

_HOMES = {
    "LoraSettings": "config", "TrainConfig": "config", "advised_config": "advised",
    "DataError": "run_inputs", "OutputError": "run_inputs", "RunState": "state", "StepInfo": "state", "TrainingRun": "loop",
    "RunResult": "run", "finetune": "run",
}
__all__ = [
    "DataError", "LoraSettings", "OutputError", "RunResult", "RunState", "StepInfo", "TrainConfig", "TrainingRun",
    "advised_config", "finetune",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
