"""(a) The book's five baselines on its single split (train 2018-07-25..31, delay 7, test 08-08..14,
known-compromised cards removed from the test), one run per simulated seed, beside the published
figures. Features are scaled with a StandardScaler fit on the train rows, as the book does."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.preprocessing import StandardScaler

from baselines import BASELINES, PUBLISHED
from compare import scores
from data import FEATURES, SINGLE_SPLIT, add_features, day_to_date, ensure_seed, load, split

METRICS = ("auc_roc", "average_precision", "card_precision_at_100")
TOLERANCE = 0.02


def fit_predict(model_name: str, train, test) -> tuple[np.ndarray, float]:
    scaler = StandardScaler().fit(train[FEATURES].to_numpy())
    model = BASELINES[model_name]()
    started = time.perf_counter()
    model.fit(scaler.transform(train[FEATURES].to_numpy()), train["is_fraud"].to_numpy())
    score = model.predict_proba(scaler.transform(test[FEATURES].to_numpy()))[:, 1]
    return score, time.perf_counter() - started


def run_seed(root: Path, seed: int) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Metrics of every baseline on one seed, and its test labels/scores (for the plots)."""
    directory, generated = ensure_seed(root, seed)
    result, curves = run_frame(load(directory).frame, f"seed {seed}")
    return {"seed": seed, "generated_now": generated, **result}, curves


def run_frame(frame, label: str) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """The five baselines on one data set with features (a seed, or the book's own data set)."""
    train, test = split(frame, SINGLE_SPLIT)
    out: dict[str, Any] = {
        "transactions": len(frame), "fraud_rate": float(frame["is_fraud"].mean()),
        "test_frauds_by_scenario": {str(k): int(v) for k, v in test.loc[test["is_fraud"] == 1, "fraud_scenario"]
                                    .value_counts().sort_index().items()},
        "train": {"transactions": len(train), "frauds": int(train["is_fraud"].sum())},
        "test": {"transactions": len(test), "frauds": int(test["is_fraud"].sum())},
        "models": {},
    }
    curves: dict[str, dict[str, np.ndarray]] = {}
    days, cards, labels = test["day"].to_numpy(), test["card_number"].to_numpy(), test["is_fraud"].to_numpy()
    for name in BASELINES:
        score, seconds = fit_predict(name, train, test)
        result = scores(labels, score, days, cards)
        result["fit_predict_seconds"] = round(seconds, 2)
        out["models"][name] = result
        curves[name] = {"labels": labels, "scores": score, "days": days, "cards": cards}
        print(f"{label} {name}: AUC {result['auc_roc']:.3f} AP {result['average_precision']:.3f} "
              f"CP@100 {result['card_precision_at_100']:.3f} ({seconds:.1f} s)", flush=True)
    return out, curves


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """5-seed mean, std (ddof=1), min and max per model and metric, beside the book and the ±0.02 target."""
    summary: dict[str, Any] = {}
    for name in BASELINES:
        summary[name] = {}
        for metric in METRICS:
            values = np.array([s["models"][name][metric] for s in per_seed])
            published = PUBLISHED[name][metric]
            mean = float(values.mean())
            summary[name][metric] = {
                "mean": mean, "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                "min": float(values.min()), "max": float(values.max()), "published": published,
                "difference": mean - published, "within_target": bool(abs(mean - published) <= TOLERANCE)}
    return summary


def run(root: Path, seeds: list[int],
        book_raw: Path | None = None) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Every seed, then (when given) the book's own data set; curves of the first seed for the plots."""
    per_seed, first_curves = [], {}
    for seed in seeds:
        result, curves = run_seed(root, seed)
        per_seed.append(result)
        if not first_curves:
            first_curves = curves
    split_dates = {w: [day_to_date(d) for d in getattr(SINGLE_SPLIT, f"{w}_range")] for w in ("train", "delay", "eval")}
    book_data = None
    if book_raw is not None:
        from book_data import ORIGIN_SECONDS, load_book_raw

        book_data, _ = run_frame(add_features(load_book_raw(book_raw), ORIGIN_SECONDS), "book data")
    return {"split": split_dates, "seeds": per_seed, "summary": summarize(per_seed), "book_data": book_data,
            "book_counts": {"train": {"transactions": 67240, "frauds": 598},
                            "test": {"transactions": 58264, "frauds": 385}}}, first_curves


def markdown(result: dict[str, Any]) -> str:
    names = {"auc_roc": "AUC ROC", "average_precision": "AP", "card_precision_at_100": "CP@100"}
    seeds = [s["seed"] for s in result["seeds"]]
    windows = {name: " .. ".join(result["split"][name]) for name in ("train", "delay", "eval")}
    lines = [f"Single split (train {windows['train']}, delay {windows['delay']}, "
             f"test {windows['eval']}), seeds {seeds}: mean ± std [min, max] over seeds "
             "(book's figure; difference; ✓ within ±0.02)", "",
             "| model | " + " | ".join(names.values()) + " |", "|---|---|---|---|"]
    for name, metrics in result["summary"].items():
        cells = []
        for metric in METRICS:
            m = metrics[metric]
            mark = "✓" if m["within_target"] else "✗"
            cells.append(f"{m['mean']:.3f} ± {m['std']:.3f} [{m['min']:.3f}, {m['max']:.3f}] "
                         f"(book {m['published']:.3f}; {m['difference']:+.3f} {mark})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| seed | transactions | fraud rate | train (frauds) | test (frauds) |", "|---|---|---|---|---|"]
    for s in result["seeds"]:
        lines.append(f"| {s['seed']} | {s['transactions']:,} | {s['fraud_rate']:.2%} | {s['train']['transactions']:,} "
                     f"({s['train']['frauds']}) | {s['test']['transactions']:,} ({s['test']['frauds']}) |")
    book = result["book_counts"]
    lines.append(f"| book | 1,754,155 | 0.84% | {book['train']['transactions']:,} ({book['train']['frauds']}) | "
                 f"{book['test']['transactions']:,} ({book['test']['frauds']}) |")
    own = result.get("book_data")
    if own:
        train, test = own["train"], own["test"]
        lines += ["", f"The book's own published data set through the same code ({own['transactions']:,} "
                  f"transactions; train {train['transactions']:,} ({train['frauds']}), test "
                  f"{test['transactions']:,} ({test['frauds']})):", "", "| model | AUC ROC | AP | CP@100 |",
                  "|---|---|---|---|"]
        for name, r in own["models"].items():
            book = PUBLISHED[name]
            lines.append(f"| {name} | " + " | ".join(
                f"{r[m]:.3f} (book {book[m]:.3f}; {r[m] - book[m]:+.3f})" for m in METRICS) + " |")
    return "\n".join(lines) + "\n"
