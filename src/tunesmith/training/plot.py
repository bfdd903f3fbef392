"""The loss-curve PNG written at the end of a run."""

from __future__ import annotations

from pathlib import Path


def plot_loss(training_rows: list[list], validation_rows: list[list], path: Path, title: str) -> Path:
    """Loss against the optimizer step, counted from 1 (the CSV rows count from 0: ``metrics.py``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=120)
    if training_rows:
        axis.plot([r[0] + 1 for r in training_rows], [r[2] for r in training_rows], label="training loss", linewidth=1.2)
    if validation_rows:
        axis.plot([r[0] + 1 for r in validation_rows], [r[2] for r in validation_rows], "o-", label="validation loss")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss (target tokens)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
