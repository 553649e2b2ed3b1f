"""How unusual is the book's test week? The logistic-regression baseline on the single-split protocol
moved week by week (10 test weeks ending 2018-07-09 … 09-11), on each seed and on the book's own data,
with AP over all frauds and per scenario-3 frauds (compromised customers, the few cards per week that
make a week easy or hard). One test week is one draw; the mean over weeks compares data sets."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.fraud.metrics import average_precision

from data import book_split, day_to_date, split
from single_split import fit_predict

END_DAYS = tuple(range(100, 164, 7))  # test weeks ending 2018-07-09 … 09-11; 135 is the book's


def run(frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    rows = []
    for name, frame in frames.items():
        for end in END_DAYS:
            train, test = split(frame, book_split(end))
            score, _ = fit_predict("logistic_regression", train, test)
            labels, scenario = test["is_fraud"].to_numpy(), test["fraud_scenario"].to_numpy()
            only3 = (scenario == 0) | (scenario == 3)
            rows.append({"data": name, "test_end": day_to_date(end), "ap": average_precision(labels, score),
                         "ap_scenario_3_only": average_precision(labels[only3], score[only3]),
                         "ap_without_scenario_3": average_precision(labels[scenario != 3], score[scenario != 3]),
                         "scenario_3_frauds": int((scenario == 3).sum())})
            print(f"weekly {name} {rows[-1]['test_end']}: AP {rows[-1]['ap']:.3f}", flush=True)
    table = pd.DataFrame(rows)
    means = table.groupby("data")[["ap", "ap_scenario_3_only", "ap_without_scenario_3"]].agg(["mean", "std"])
    return {"rows": rows, "mean_over_weeks": {name: {f"{m}_{s}": float(means.loc[name, (m, s)])
                                                     for m, s in means.columns} for name in means.index}}


def markdown(result: dict[str, Any]) -> str:
    table = pd.DataFrame(result["rows"])
    names = list(dict.fromkeys(table["data"]))
    lines = ["Logistic regression, single-split protocol moved by weeks: test AP (AP on scenario-3 frauds only)", "",
             "| test week ends | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for end, group in table.groupby("test_end", sort=True):
        by = group.set_index("data")
        lines.append(f"| {end} | " + " | ".join(
            f"{by.loc[n, 'ap']:.3f} ({by.loc[n, 'ap_scenario_3_only']:.3f})" for n in names) + " |")
    means = result["mean_over_weeks"]
    lines.append("| **mean ± std** | " + " | ".join(
        f"**{means[n]['ap_mean']:.3f}** ± {means[n]['ap_std']:.3f} ({means[n]['ap_scenario_3_only_mean']:.3f})"
        for n in names) + " |")
    return "\n".join(lines) + "\n"


def pooled_mean(result: dict[str, Any], prefix: str = "seed") -> float:
    """Mean weekly AP over every simulated seed (not the book's data)."""
    return float(np.mean([r["ap"] for r in result["rows"] if r["data"].startswith(prefix)]))
