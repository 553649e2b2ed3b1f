"""TFLite variants of each use case's blessed model, before and after, as the pipeline's ModelOptimizer
measures them: AUC, AUC-PR, recall at the configured FPR, score differences, file size and in-process
1-row / 64-row latency (SavedModel and variants interleaved call by call, in one process).

Each use case runs its shipped config (configs/<name>.yaml, optimization section included) through
`esteira run` in a scratch folder, with data written by `esteira data` and the training shortened as
given on the command line; the table is read back from the run's MLMD (the ModelOptimizer artifact).

    .venv/bin/python benchmarks/optimization/bench_optimization.py \
        --use-case breast_cancer --use-case fraud --out benchmarks/optimization/results

Writes <out>/optimization.json, <out>/OPTIMIZATION.md (machine, date, command) and <out>/optimization.png.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

# Data and training per use case: the e2e tests' sizes, so a run takes minutes, not an hour.
USE_CASES: dict[str, dict[str, Any]] = {
    "breast_cancer": {"data": ["breast-cancer", "--out", "data/breast_cancer"], "training": {}},
    "fraud": {"data": ["fraud", "--transactions", "24000", "--days", "3", "--seed", "11", "--out", "data/fraud",
                       "--no-progress"],
              "training": {"train_steps": 150, "eval_steps": 5, "epochs": 1},
              "evaluation": {"auc_lower_bound": 0.9}},
}
PSEUDONYM_KEY = "benchmark-pseudonym-key-" + "b" * 40  # scratch data only; never a real key


def esteira(cwd: Path, *args: str) -> str:
    env = dict(os.environ, ESTEIRA_PSEUDONYM_KEY=os.environ.get("ESTEIRA_PSEUDONYM_KEY", PSEUDONYM_KEY))
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"esteira {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout


def run_use_case(name: str, workdir: Path) -> dict[str, Any]:
    from pipeline.config import load_config
    from pipeline.report import load_report

    spec = USE_CASES[name]
    esteira(workdir, "data", *spec["data"])
    data = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    for section in ("training", "evaluation"):
        data[section].update(spec.get(section, {}))
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    started = time.perf_counter()
    esteira(workdir, "run", "--config", str(config_path))
    config = load_config(config_path, base=workdir)
    report = load_report(config.pipeline.metadata_path, config.pipeline.name)
    if not report.optimization.get("rows"):
        raise RuntimeError(f"{name}: the ModelOptimizer measured nothing: "
                           f"{report.optimization.get('publish_reason') or 'model not blessed'}")
    optimizer = next(e for e in report.executions if e.node == "ModelOptimizer")
    return {**report.optimization, "pipeline_seconds": round(time.perf_counter() - started, 1),
            "optimizer_seconds": round(optimizer.seconds, 1), "eval_auc": report.metrics.get("auc")}


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("auc", "AUC on the eval split"), ("file_bytes", "file size (KiB)"),
              ("latency_ms_1_row", "1-row latency (ms)"), ("latency_ms_64_rows", "64-row latency (ms)"))
    figure, axes = plt.subplots(len(results), len(panels), figsize=(4.2 * len(panels), 3.4 * len(results)),
                                squeeze=False)
    for row_axes, (name, result) in zip(axes, results.items()):
        rows = [r for r in result["rows"] if r.get("converted", True)]
        labels = [r["variant"].replace("_", "\n") for r in rows]
        for axis, (key, title) in zip(row_axes, panels):
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
    parser.add_argument("--use-case", action="append", choices=sorted(USE_CASES), required=True)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "optimization" / "results")
    args = parser.parse_args()
    from optimization.optimize import format_table

    results = {}
    for name in args.use_case:
        with tempfile.TemporaryDirectory(prefix=f"bench-optimization-{name}-") as scratch:
            results[name] = run_use_case(name, Path(scratch))
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]).relative_to(REPO))
                                                            if Path(sys.argv[0]).is_absolute() else sys.argv[0],
                                                            *sys.argv[1:]])
    machine = f"{platform.node()} | {platform.platform()} | {os.cpu_count()} CPUs | Python {platform.python_version()}"
    recorded = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine,
                "command": command, "use_cases": results}
    (args.out / "optimization.json").write_text(json.dumps(recorded, indent=2) + "\n")
    lines = ["# TFLite variants, before and after", "", f"- date: {recorded['date']}", f"- machine: {machine}",
             f"- command: `{command}`", ""]
    for name, result in results.items():
        lines += [f"## {name}", "",
                  f"{result['eval_rows']} eval rows, {result['calibration_rows']} calibration rows (train split), "
                  f"signature `{result['signature']}`, gate: AUC drop <= {result['max_auc_drop']:g}, recall at "
                  f"FPR {result['false_positive_rate']:g}; ModelOptimizer {result['optimizer_seconds']} s of a "
                  f"{result['pipeline_seconds']} s pipeline run.", "",
                  format_table(result), "", f"Gate: {result['publish_reason']}", ""]
        failures = [r for r in result["rows"] if not r.get("converted", True)]
        lines += [f"- {r['variant']} not converted: {r['failure']}" for r in failures] + ([""] if failures else [])
    (args.out / "OPTIMIZATION.md").write_text("\n".join(lines))
    plot(results, args.out / "optimization.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
