"""(b) The prequential protocol (the book's Chapters 5-7): 4 folds of 7 days train, 7 days delay,
7 days test, each fold 7 days earlier than the one before; hyper-parameters chosen on 4 validation
folds that end 14 days (delay + test) earlier, as the book's model selection does; the best setting
by mean validation AP is refit on each test fold. Writes folds.parquet and one predictions parquet
per model (the interface compare.py documents)."""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from models.fraud.metrics import average_precision
from models.fraud.time_split import TimeSplit

from baselines import TUNED
from compare import compare
from data import FEATURES, book_split, day_to_date, split

N_FOLDS = 4
TEST_END_DAY = 135        # fold 0 tests 2018-08-08..08-14 (the single split's test week)
VALIDATION_SHIFT = 14     # delay + test days: validation fold f ends 14 days before test fold f


def test_folds() -> list[TimeSplit]:
    return [book_split(TEST_END_DAY - 7 * f) for f in range(N_FOLDS)]


def validation_folds() -> list[TimeSplit]:
    return [book_split(TEST_END_DAY - VALIDATION_SHIFT - 7 * f) for f in range(N_FOLDS)]


def describe(folds: list[TimeSplit]) -> list[dict[str, list[str]]]:
    return [{w: [day_to_date(d) for d in getattr(s, f"{w}_range")] for w in ("train", "delay", "eval")} for s in folds]


def _fit_score(factory, params: dict[str, Any], train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    scaler = StandardScaler().fit(train[FEATURES].to_numpy())
    model = factory(**params)
    model.fit(scaler.transform(train[FEATURES].to_numpy()), train["is_fraud"].to_numpy())
    return model.predict_proba(scaler.transform(test[FEATURES].to_numpy()))[:, 1]


def _grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def run(frame: pd.DataFrame, out_dir: Path, rounds: int = 200) -> dict[str, Any]:
    """Tune, refit, predict and compare; returns the JSON-ready result."""
    predictions_dir = out_dir / "predictions"
    predictions_dir.mkdir(parents=True, exist_ok=True)
    validation = [split(frame, s) for s in validation_folds()]
    testing = [split(frame, s) for s in test_folds()]
    _, card_codes = np.unique(frame["card_number"].to_numpy(), return_inverse=True)
    card_of = pd.Series(card_codes.reshape(-1), index=frame.index)
    folds = pd.concat([pd.DataFrame({"fold": f, "transaction_id": test["transaction_id"].to_numpy(np.int64),
                                     "day": test["day"].to_numpy(np.int64), "card": card_of[test.index].to_numpy(),
                                     "label": test["is_fraud"].to_numpy(np.int64)})
                       for f, (_, test) in enumerate(testing)], ignore_index=True)
    folds.to_parquet(out_dir / "folds.parquet", index=False)
    tuning: dict[str, Any] = {}
    predictions: dict[str, pd.DataFrame] = {}
    for name, (factory, grid) in TUNED.items():
        trials = []
        for params in _grid(grid):
            started = time.perf_counter()
            aps = [average_precision(test["is_fraud"].to_numpy(), _fit_score(factory, params, train, test))
                   for train, test in validation]
            trials.append({"params": params, "validation_ap_per_fold": aps, "validation_ap": float(np.mean(aps)),
                           "seconds": round(time.perf_counter() - started, 1)})
            print(f"validation {name} {params}: AP {np.mean(aps):.3f} ({trials[-1]['seconds']} s)", flush=True)
        best = max(trials, key=lambda t: t["validation_ap"])
        started = time.perf_counter()
        scored = [pd.DataFrame({"fold": f, "transaction_id": test["transaction_id"].to_numpy(np.int64),
                                "score": _fit_score(factory, best["params"], train, test)})
                  for f, (train, test) in enumerate(testing)]
        predictions[name] = pd.concat(scored, ignore_index=True)
        predictions[name].to_parquet(predictions_dir / f"{name}.parquet", index=False)
        tuning[name] = {"grid": grid, "trials": trials, "best_params": best["params"],
                        "test_fit_seconds": round(time.perf_counter() - started, 1)}
        print(f"test {name} with {best['params']}", flush=True)
    extra = sorted(p for p in predictions_dir.glob("*.parquet") if p.stem not in predictions)
    for path in extra:  # predictions of other models on the same folds (e.g. Esteira's), compared as well
        predictions[path.stem] = pd.read_parquet(path)
    reference = "esteira" if "esteira" in predictions else "xgboost"
    comparison = compare(predictions, folds, reference=reference, rounds=rounds)
    return {"test_folds": describe(test_folds()), "validation_folds": describe(validation_folds()),
            "selection": "best mean validation average precision over the 4 validation folds",
            "fold_counts": [{"train": {"transactions": len(tr), "frauds": int(tr["is_fraud"].sum())},
                             "test": {"transactions": len(te), "frauds": int(te["is_fraud"].sum())}}
                            for tr, te in testing],
            "tuning": tuning, "comparison": comparison}
