"""A PNG of the training curves, so a reviewer sees convergence without opening TensorBoard."""
from __future__ import annotations

from pathlib import Path


def plot_training_curves(history: dict[str, list[tuple[int, float]]], path: Path) -> Path | None:
    """One panel per metric (train and validation together); None when there is nothing to plot."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    metrics = sorted({name.split(".", 1)[1] for name in history})
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for phase in ("train", "validation"):
            points = history.get(f"{phase}.{metric}")
            if points:
                axis.plot([step for step, _ in points], [value for _, value in points], marker="o", label=phase)
        axis.set_title(metric)
        axis.set_xlabel("epoch")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
