"""Per-component wall time of the demo pipeline: LocalDagRunner vs BeamDagRunner, same data, same run.

A third variant runs LocalDagRunner with empty beam_pipeline_args, to show what the deliberate
`--runner=FnApiRunner` costs or saves (any non-empty args make TFX build an sdist per Beam component;
empty args make Beam 2.77 try to download its Prism runner first).

    python benchmarks/pipeline/runners.py [--train-steps N] [--repeats R]

Variants are interleaved within each repeat so machine noise hits all of them alike. Results go to
benchmarks/pipeline/results/ (JSON, Markdown table, PNG).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {
    "local": ("local", None),
    "beam": ("beam", None),
    "local, empty beam args": ("local", []),
}
NODES = ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
         "Evaluator", "Pusher")


def run_variant(workdir: Path, runner: str, beam_args: list[str] | None, train_steps: int) -> dict:
    """One full, uncached pipeline run in a fresh subprocess; per-node seconds read back from MLMD."""
    data = yaml.safe_load((REPO / "configs" / "breast_cancer.yaml").read_text())
    data["training"]["train_steps"] = train_steps
    if beam_args is not None:
        data["runner"]["beam_args"] = beam_args
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    subprocess.run([sys.executable, "-m", "cli", "data", "breast-cancer", "--out", "data/breast_cancer"],
                   cwd=workdir, check=True, capture_output=True)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "cli", "run", "--config", str(config_path),
                             "--runner", runner], cwd=workdir, capture_output=True, text=True)
    process_seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"{runner} run failed:\n{result.stderr[-3000:]}")
    from pipeline.config import load_config
    from pipeline.report import load_report

    config = load_config(config_path, base=workdir)
    report = load_report(config.pipeline.metadata_path, config.pipeline.name)
    nodes = {e.node: e.seconds for e in report.executions if e.node in NODES}
    return {"nodes": nodes, "components_total": sum(nodes.values()), "process_wall": process_seconds,
            "auc": report.metrics.get("auc")}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = list(results)
    bottoms = [0.0] * len(names)
    for node in NODES:
        heights = [sum(r["nodes"].get(node, 0.0) for r in results[n]) / len(results[n]) for n in names]
        ax.barh(names, heights, left=bottoms, label=node)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.set_xlabel("seconds (mean per run)")
    ax.set_title("Demo pipeline: per-component wall time by runner")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for repeat in range(args.repeats):
        for name, (runner, beam_args) in VARIANTS.items():
            with tempfile.TemporaryDirectory() as workdir:
                outcome = run_variant(Path(workdir), runner, beam_args, args.train_steps)
            results[name].append(outcome)
            print(f"repeat {repeat + 1} {name:<24} components {outcome['components_total']:6.1f} s  "
                  f"process {outcome['process_wall']:6.1f} s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}",
        "command": f"python benchmarks/pipeline/runners.py --train-steps {args.train_steps} --repeats {args.repeats}",
        "load_average_at_end": os.getloadavg(),
    }
    (RESULTS / "runners.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = ["# Demo pipeline wall time per component by runner", "",
             f"- date: {meta['date']}", f"- machine: {meta['machine']}", f"- command: `{meta['command']}`",
             f"- load average at the end (1/5/15 min): {', '.join(f'{x:.1f}' for x in meta['load_average_at_end'])}",
             "", "| component | " + " | ".join(VARIANTS) + " |", "|---|" + "---:|" * len(VARIANTS)]
    for node in (*NODES, "components_total", "process_wall"):
        cells = []
        for name in VARIANTS:
            values = [r["nodes"].get(node) if node in NODES else r[node] for r in results[name]]
            values = [v for v in values if v is not None]
            cells.append(f"{sum(values) / len(values):.1f} s" if values else "—")
        lines.append(f"| {node} | " + " | ".join(cells) + " |")
    (RESULTS / "runners.md").write_text("\n".join(lines) + "\n")
    plot(results, RESULTS / "runners.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
