"""PR curves and CP@100 per day (matplotlib, written as PNG without a display)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve

from models.fraud.metrics import average_precision, card_precision_at_k

from data import day_to_date


def pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, path: Path) -> None:
    """curves: model -> (labels, scores)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for name, (labels, scores) in curves.items():
        precision, recall, _ = precision_recall_curve(labels, scores)
        ax.step(recall, precision, where="post", label=f"{name} (AP {average_precision(labels, scores):.3f})")
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cp_per_day(per_day: dict[str, dict[int, float]], title: str, path: Path, folds: list[tuple[int, int]] = ()) -> None:
    """per_day: model -> {day: CP@100}; folds: (first, last) test days shaded alternately."""
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    for i, (first, last) in enumerate(folds):
        if i % 2:
            ax.axvspan(first - 0.5, last + 0.5, color="0.92", lw=0)
    for name, values in per_day.items():
        days = sorted(values)
        mean = np.mean(list(values.values()))
        ax.plot(days, [values[d] for d in days], marker=".", label=f"{name} (mean {mean:.3f})")
    ticks = sorted({d for v in per_day.values() for d in v})[::3]
    ax.set_xticks(ticks, [day_to_date(d)[5:] for d in ticks], rotation=45, fontsize=7)
    ax.set(xlabel="test day (2018)", ylabel="Card Precision@100", title=title, ylim=(0, None))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prequential_plots(folds: pd.DataFrame, predictions: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """PR curves pooled over the test folds, and CP@100 per test day (each fold's days from its own model)."""
    curves, per_day, spans = {}, {}, []
    for name, frame in predictions.items():
        merged = folds.merge(frame, on=["fold", "transaction_id"], how="inner")
        curves[name] = (merged["label"].to_numpy(), merged["score"].to_numpy())
        per_day[name] = {}
        for _, fold in merged.groupby("fold"):
            per_day[name].update(card_precision_at_k(fold["day"].to_numpy(), fold["card"].to_numpy(),
                                                     fold["label"].to_numpy(), fold["score"].to_numpy())[1])
    for _, fold in folds.groupby("fold"):
        spans.append((int(fold["day"].min()), int(fold["day"].max())))
    paths = [out_dir / "prequential_pr_curves.png", out_dir / "prequential_cp100_per_day.png"]
    pr_curves(curves, "Prequential test folds (4 × 7 days, pooled)", paths[0])
    cp_per_day(per_day, "CP@100 per day, prequential test folds", paths[1], spans)
    return paths
