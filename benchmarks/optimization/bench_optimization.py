"""TFLite variants of each use case's trained model, before and after, measured by the library the
pipeline's ModelOptimizer runs (optimization/): AUC, AUC-PR, recall at the configured FPR, score
differences, file size and in-process 1-row / 64-row latency (SavedModel and variants interleaved call
by call, in one process), with the use case's shipped `optimization:` settings.

Each use case names a SavedModel from a pipeline run (a pushed version folder or the Trainer's
Format-Serving folder) and that run's ExampleGen artifact (Split-train/, Split-eval/):

    .venv/bin/python benchmarks/optimization/bench_optimization.py \
        --case breast_cancer configs/breast_cancer.yaml <version dir> <examples dir> \
        --case fraud configs/fraud.yaml <version dir> <examples dir> --out benchmarks/optimization/results

Writes <out>/optimization.json, <out>/OPTIMIZATION.md (machine, date, command) and <out>/optimization.png.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def run_case(config_path: Path, model: Path, examples: Path, out: Path) -> dict[str, Any]:
    """The optimization table of one model, as the ModelOptimizer would write it."""
    from optimization.optimize import optimize_files
    from pipeline.config import load_config

    config = load_config(config_path, base=REPO)
    if config.optimization is None:
        raise SystemExit(f"{config_path} has no optimization section")
    started = time.perf_counter()
    report = optimize_files(model, config.optimization,
                            train_files=sorted(map(str, (examples / "Split-train").glob("*"))),
                            eval_files=sorted(map(str, (examples / "Split-eval").glob("*"))),
                            label=config.data.label, output_dir=out)
    return {**report.as_dict(), "optimizer_seconds": round(time.perf_counter() - started, 1)}


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("auc", "AUC on the eval split"), ("file_bytes", "file size (KiB)"),
              ("latency_ms_1_row", "1-row latency (ms)"), ("latency_ms_64_rows", "64-row latency (ms)"))
    figure, axes = plt.subplots(len(results), len(panels), figsize=(4.2 * len(panels), 3.4 * len(results)),
                                squeeze=False)
    for row_axes, (name, result) in zip(axes, results.items(), strict=True):
        rows = [r for r in result["rows"] if r.get("auc") is not None]  # the measured ones
        labels = [r["variant"].replace("_", "\n") for r in rows]
        for axis, (key, title) in zip(row_axes, panels, strict=True):
            values = [(r.get(key) or 0) / (1024 if key == "file_bytes" else 1) for r in rows]
            colors = ["#555555" if r["variant"] == "saved_model" else "#2a7ab9" if r.get("passed") else "#c0392b"
                      for r in rows]
            axis.bar(labels, values, color=colors)
            axis.set_title(f"{name}: {title}", fontsize=9)
            axis.tick_params(labelsize=7)
            if key == "auc":
                low = min(values)
                axis.set_ylim(max(0.0, low - 0.05), 1.0)
    figure.suptitle("TFLite variants vs the SavedModel (grey); blue passed the AUC gate, red did not", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=4, action="append", required=True,
                        metavar=("NAME", "CONFIG", "SAVED_MODEL", "EXAMPLES"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "optimization" / "results")
    args = parser.parse_args()
    import tempfile

    from optimization.optimize import format_table

    results = {}
    for name, config, model, examples in args.case:
        with tempfile.TemporaryDirectory(prefix=f"bench-optimization-{name}-") as scratch:
            results[name] = run_case(Path(config), Path(model), Path(examples), Path(scratch))
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]).relative_to(REPO))
                                                            if Path(sys.argv[0]).is_absolute() else sys.argv[0],
                                                            *sys.argv[1:]])
    machine = f"{platform.node()} | {platform.platform()} | {os.cpu_count()} CPUs | Python {platform.python_version()}"
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    recorded_file = args.out / "optimization.json"
    # Cases measured in earlier invocations stay, each with its own date, machine and command.
    recorded = json.loads(recorded_file.read_text()) if recorded_file.is_file() else {"use_cases": {}}
    for name, result in results.items():
        recorded["use_cases"][name] = {"date": date, "machine": machine, "command": command, **result}
    recorded_file.write_text(json.dumps(recorded, indent=2) + "\n")
    lines = ["# TFLite variants, before and after", ""]
    for name, result in recorded["use_cases"].items():
        lines += [f"## {name}", "", f"- date: {result['date']}", f"- machine: {result['machine']}",
                  f"- command: `{result['command']}`", "",
                  f"{result['eval_rows']} eval rows, {result['calibration_rows']} calibration rows (train split), "
                  f"signature `{result['signature']}`, gate: AUC drop <= {result['max_auc_drop']:g}, recall at "
                  f"FPR {result['false_positive_rate']:g}; {result['optimizer_seconds']} s in all "
                  "(conversions, scoring, timing).", "",
                  format_table(result), "", f"Gate: {result['publish_reason']}", ""]
        failures = [r for r in result["rows"] if r.get("failure")]
        lines += [f"- {r['variant']}: {r['failure']}" for r in failures] + ([""] if failures else [])
    (args.out / "OPTIMIZATION.md").write_text("\n".join(lines))
    plot(recorded["use_cases"], args.out / "optimization.png")
    print("\n".join(lines))

if __name__ == "__main__":
    main()
