"""Many LoRA jobs over one frozen base model, trained in one forward and backward pass.

- ``trainer.py``: :class:`JobsTogether`, the group of jobs (each a ``TrainingRun`` of its own
  in everything but the model).
- ``batches.py``: micro-batches holding several jobs' records, each job's together.
- ``segments.py``: LoRA layers that apply each job's adapter to its own segment of a batch.
"""

from tunesmith.multi_adapter.trainer import JobOutcome, JobsTogether

__all__ = ["JobOutcome", "JobsTogether"]
