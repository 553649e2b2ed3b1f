"""What any causal model can reach on the prequential test folds, and where each model loses.

The handbook's frauds are of three kinds (`fraud_scenario` in the raw data, kept here for diagnosis only):
1. an amount above 220; 2. every transaction at a compromised terminal for 28 days; 3. a third of a
compromised card's transactions for 14 days, at 5 times the usual amount. A scenario-2 fraud whose
terminal shows no fraud label yet known at scoring time (none in the terminal features' window
(t - 37 days, t - 7 days]) looks exactly like a legitimate purchase: the amount is the customer's usual
one, the card is not compromised. No model of the causal features can rank it above the legitimate
transactions, so it bounds average precision from above, and the compromised cards per test day bound
Card Precision@100 (a day with 49 compromised cards cannot give more than 0.49).

For each fold and model this prints the fraud mix, the ceilings, and each scenario's recall at the
fold's top 100 transactions a day (investigators' budget) so models can be compared where they differ.

    .venv/bin/python benchmarks/fraud/handbook/limits.py --data /tmp/handbook-data/seed-1 \\
        --folds results/prequential/folds.parquet --predictions results/prequential/predictions/*.parquet \\
        --out results/limits.md
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from models.fraud.metrics import average_precision, card_precision_at_k  # noqa: E402

from compare import align  # noqa: E402
from data import load  # noqa: E402

ALERTS_PER_DAY = 100


def terminal_known(frame: pd.DataFrame) -> pd.Series:
    """Whether the terminal has a fraud label known at scoring time: its 30-day risk feature (the window
    (t - 37 days, t - 7 days], data.py's own feature) is above zero; indexed by transaction_id."""
    return pd.Series(frame["terminal_risk_30d"].to_numpy() > 0, index=frame["transaction_id"].to_numpy())


def ceiling_scores(labels: np.ndarray, hidden: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scores of a model that ranks every visible fraud first and cannot tell hidden frauds from legitimate rows."""
    score = np.where(labels == 1, 2.0, 0.0) + rng.random(labels.size)
    score[hidden] = rng.random(int(hidden.sum()))
    return score


def top_per_day(days: np.ndarray, score: np.ndarray, budget: int) -> np.ndarray:
    """Mask of each day's `budget` highest-scored transactions."""
    chosen = np.zeros(days.size, bool)
    for day in np.unique(days):
        rows = np.flatnonzero(days == day)
        chosen[rows[np.argsort(-score[rows], kind="stable")[:budget]]] = True
    return chosen


def diagnose(folds: pd.DataFrame, frame: pd.DataFrame, predictions: dict[str, pd.DataFrame]) -> list[str]:
    """The Markdown tables: ceilings per fold, then recall by scenario at the daily alert budget per model."""
    known = terminal_known(frame)
    scenario = pd.Series(frame["fraud_scenario"].to_numpy(), index=frame["transaction_id"].to_numpy())
    rng = np.random.default_rng(0)
    lines = ["| fold | test frauds | scenario 1 / 2 / 3 | scenario 2 with no known terminal label | "
             "AP ceiling | CP@100 ceiling | compromised cards a day |", "|---|---|---|---|---|---|---|"]
    recalls: dict[str, list[dict[str, float]]] = {name: [] for name in predictions}
    for fold, rows in folds.groupby("fold", sort=True):
        labels = rows["label"].to_numpy()
        tids = rows["transaction_id"].to_numpy()
        kind = scenario.loc[tids].to_numpy()
        hidden = (kind == 2) & ~known.loc[tids].to_numpy()
        frauds = int(labels.sum())
        mix = " / ".join(str(int(((kind == s) & (labels == 1)).sum())) for s in (1, 2, 3))
        cards_a_day = rows[rows["label"] == 1].groupby("day")["card"].nunique()
        ceiling = ceiling_scores(labels, hidden, rng)
        cp_ceiling = card_precision_at_k(rows["day"].to_numpy(), rows["card"].to_numpy(), labels, ceiling,
                                         k=ALERTS_PER_DAY)[0]
        lines.append(f"| {fold} | {frauds} | {mix} | {int(hidden.sum())} ({hidden.sum() / frauds:.0%}) | "
                     f"{average_precision(labels, ceiling):.3f} | {cp_ceiling:.3f} | {cards_a_day.mean():.0f} |")
        for name, frame in predictions.items():
            score = align(frame[frame["fold"] == fold], rows, name)
            alerted = top_per_day(rows["day"].to_numpy(), score, ALERTS_PER_DAY)
            found = {f"scenario {s}": float(alerted[(kind == s) & (labels == 1)].mean()) for s in (1, 2, 3)}
            found["scenario 2, terminal known"] = float(alerted[(kind == 2) & ~hidden & (labels == 1)].mean())
            found["AP"] = average_precision(labels, score)
            recalls[name].append(found)
    columns = list(next(iter(recalls.values()))[0]) if recalls else []
    lines += ["", f"Recall at the top {ALERTS_PER_DAY} transactions a day, by scenario (mean over the folds), "
              "and AP:", "", "| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, per_fold in recalls.items():
        lines.append(f"| {name} | " + " | ".join(f"{np.mean([f[c] for f in per_fold]):.3f}" for c in columns) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the handbook profile's raw folder")
    parser.add_argument("--folds", type=Path, required=True, help="folds.parquet written by prequential.py")
    parser.add_argument("--predictions", type=Path, nargs="*", default=[], help="<model>.parquet files")
    parser.add_argument("--out", type=Path, help="write the Markdown here as well")
    args = parser.parse_args()
    folds = pd.read_parquet(args.folds)
    predictions = {path.stem: pd.read_parquet(path) for path in args.predictions}
    for name, frame in predictions.items():
        if set(frame["fold"].unique()) != set(folds["fold"].unique()):
            folds = folds[folds["fold"].isin(frame["fold"].unique())]
            print(f"{name} covers folds {sorted(frame['fold'].unique())}: only those are compared", file=sys.stderr)
    lines = [f"Measured {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; command: `{' '.join(sys.argv)}`", "",
             *diagnose(folds, load(args.data).frame, predictions)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
