"""Compare models on the same prequential test folds: per-fold AUC ROC, AP and CP@100, mean ± std over
the folds, and card-level bootstrap intervals of each metric and of each model's difference to a
reference model (paired: every model is scored on the same resampled cards).

Interface (for any model, e.g. Esteira's fraud model trained through the pipeline):

- `folds.parquet` (written by prequential.py): one row per test transaction of every fold, columns
  fold (int, 0 = latest), transaction_id (int64, the raw CSV's), day (int, 0 = 2018-04-01),
  card (int, a card index; no card number is stored), label (0/1).
- a predictions file per model, `<name>.parquet`: columns fold, transaction_id, score (float, higher
  = more likely fraud), exactly one row per (fold, transaction_id) of folds.parquet.

    python benchmarks/fraud/handbook/compare.py --folds results/prequential/folds.parquet \
        --predictions results/prequential/predictions/*.parquet path/to/esteira.parquet --reference esteira

or from Python: `compare({"esteira": frame, ...}, folds, reference="esteira")`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from models.fraud.metrics import average_precision, card_precision_at_k  # noqa: E402

K = 100
BOOTSTRAP_METRICS = ("average_precision", "card_precision_at_100")
FOLD_COLUMNS = ["fold", "transaction_id", "day", "card", "label"]
PREDICTION_COLUMNS = ["fold", "transaction_id", "score"]


class CompareError(ValueError):
    """Predictions that do not line up with the folds (the message says what is missing)."""


def scores(labels: np.ndarray, score: np.ndarray, days: np.ndarray, cards: np.ndarray) -> dict[str, Any]:
    """The book's three test metrics, plus CP@100 per day."""
    cp, per_day = card_precision_at_k(days, cards, labels, score, k=K)
    return {"auc_roc": float(roc_auc_score(labels, score)), "average_precision": average_precision(labels, score),
            "card_precision_at_100": cp, "card_precision_at_100_per_day": {str(d): v for d, v in per_day.items()}}


def align(predictions: pd.DataFrame, folds: pd.DataFrame, name: str) -> np.ndarray:
    """The model's scores in folds.parquet's row order; refuses missing, extra or duplicated rows."""
    missing_columns = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing_columns:
        raise CompareError(f"{name}: predictions lack columns {missing_columns}; need {PREDICTION_COLUMNS}")
    if predictions.duplicated(["fold", "transaction_id"]).any():
        raise CompareError(f"{name}: duplicated (fold, transaction_id) rows; keep one score per transaction")
    merged = folds[["fold", "transaction_id"]].merge(predictions[PREDICTION_COLUMNS], how="left",
                                                     on=["fold", "transaction_id"], validate="one_to_one")
    absent = int(merged["score"].isna().sum())
    if absent:
        raise CompareError(f"{name}: {absent} of {len(folds)} test transactions have no score; score every "
                           "(fold, transaction_id) of folds.parquet")
    if len(predictions) != len(folds):
        raise CompareError(f"{name}: {len(predictions) - len(folds)} rows are not in folds.parquet; score only "
                           "its (fold, transaction_id) pairs")
    return merged["score"].to_numpy(np.float64)


def _card_resample(cards: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a bootstrap sample of cards (with replacement) and a fresh card id per drawn card."""
    order = np.argsort(cards, kind="stable")
    _, starts, counts = np.unique(cards[order], return_index=True, return_counts=True)
    chosen = rng.integers(0, starts.size, starts.size)
    n = counts[chosen]
    offsets = np.repeat(starts[chosen] - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
    rows = order[offsets + np.arange(n.sum())]
    return rows, np.repeat(np.arange(chosen.size), n)


def compare(predictions: Mapping[str, pd.DataFrame], folds: pd.DataFrame, reference: str | None = None,
            rounds: int = 200, seed: int = 0) -> dict[str, Any]:
    """Per-fold metrics, mean ± std (ddof=1) over folds, and 95 % card-bootstrap intervals of the
    fold-mean AP and CP@100 and of each model's difference to `reference`."""
    missing = [c for c in FOLD_COLUMNS if c not in folds.columns]
    if missing:
        raise CompareError(f"folds lack columns {missing}; use the folds.parquet prequential.py writes")
    if reference is not None and reference not in predictions:
        raise CompareError(f"reference {reference!r} is not among the models {sorted(predictions)}")
    aligned = {name: align(frame, folds, name) for name, frame in predictions.items()}
    fold_ids = sorted(folds["fold"].unique())
    by_fold = {f: np.flatnonzero(folds["fold"].to_numpy() == f) for f in fold_ids}
    columns = {c: folds[c].to_numpy() for c in ("day", "card", "label")}
    result: dict[str, Any] = {"folds": [int(f) for f in fold_ids], "models": {}, "bootstrap_rounds": rounds,
                              "reference": reference}
    for name, score in aligned.items():
        per_fold = [scores(columns["label"][r], score[r], columns["day"][r], columns["card"][r])
                    for r in by_fold.values()]
        summary = {}
        for metric in ("auc_roc", "average_precision", "card_precision_at_100"):
            values = np.array([p[metric] for p in per_fold])
            summary[metric] = {"mean": float(values.mean()),
                               "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                               "per_fold": values.tolist()}
        result["models"][name] = {"summary": summary, "per_fold": per_fold}
    # paired card bootstrap: one resample of cards per fold and round, shared by every model
    rng = np.random.default_rng(seed)
    draws = {name: {m: np.zeros(rounds) for m in BOOTSTRAP_METRICS} for name in aligned}
    for b in range(rounds):
        for rows in by_fold.values():
            picked, new_cards = _card_resample(columns["card"][rows], rng)
            sample = rows[picked]
            labels, days = columns["label"][sample], columns["day"][sample]
            for name, score in aligned.items():
                draws[name]["average_precision"][b] += average_precision(labels, score[sample]) / len(by_fold)
                draws[name]["card_precision_at_100"][b] += card_precision_at_k(
                    days, new_cards, labels, score[sample], k=K)[0] / len(by_fold)
    for name in aligned:
        result["models"][name]["bootstrap_95"] = {m: np.percentile(draws[name][m], [2.5, 97.5]).tolist()
                                                  for m in BOOTSTRAP_METRICS}
        if reference is not None and name != reference:
            result["models"][name][f"difference_to_{reference}_95"] = {
                m: np.percentile(draws[name][m] - draws[reference][m], [2.5, 97.5]).tolist()
                for m in BOOTSTRAP_METRICS}
    return result


def markdown(result: dict[str, Any]) -> str:
    """One table row per model: mean ± std over folds, [bootstrap 95 %] and the difference to the reference."""
    ref = result["reference"]
    differences = f" AP − {ref} 95 % | CP@100 − {ref} 95 % |" if ref else ""
    lines = ["| model | AUC ROC | AP | AP 95 % | CP@100 | CP@100 95 % |" + differences,
             "|---|---|---|---|---|---|" + ("---|---|" if ref else "")]
    for name, r in result["models"].items():
        s, boot = r["summary"], r["bootstrap_95"]
        cells = [name, f"{s['auc_roc']['mean']:.3f} ± {s['auc_roc']['std']:.3f}",
                 f"{s['average_precision']['mean']:.3f} ± {s['average_precision']['std']:.3f}",
                 "[{:.3f}, {:.3f}]".format(*boot["average_precision"]),
                 f"{s['card_precision_at_100']['mean']:.3f} ± {s['card_precision_at_100']['std']:.3f}",
                 "[{:.3f}, {:.3f}]".format(*boot["card_precision_at_100"])]
        if ref:
            diff = r.get(f"difference_to_{ref}_95")
            cells += ["[{:+.3f}, {:+.3f}]".format(*diff[m]) if diff else "—" for m in BOOTSTRAP_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load_predictions(paths: list[Path]) -> dict[str, pd.DataFrame]:
    return {path.stem: pd.read_parquet(path) for path in paths}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, nargs="+", required=True, help="<model name>.parquet files")
    parser.add_argument("--reference", default=None, help="model whose difference to every other is bootstrapped")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md")
    parser.add_argument("--plots", type=Path, default=None,
                        help="also draw the pooled PR curves and CP@100 per day of every model into this folder")
    args = parser.parse_args(argv)
    predictions, folds = load_predictions(args.predictions), pd.read_parquet(args.folds)
    try:
        result = compare(predictions, folds, args.reference, args.rounds)
    except CompareError as error:
        print(f"compare: error: {error}", file=sys.stderr)
        return 2
    table = markdown(result)
    print(table)
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        header = (f"Measured {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} on `{platform.platform()}` "
                  f"({os.cpu_count()} CPUs, load average {load}); command: `python {' '.join(sys.argv)}`; "
                  f"{args.rounds} card-bootstrap rounds.\n\n")
        args.out.with_suffix(".md").write_text(header + table, encoding="utf-8")
    if args.plots:
        from plots import prequential_plots

        args.plots.mkdir(parents=True, exist_ok=True)
        print("plots:", *prequential_plots(folds, predictions, args.plots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
