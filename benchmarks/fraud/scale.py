"""The fraud pipeline on a large span: per-component wall time, Beam in-process vs multi-processing.

Same simulated data, same config (configs/fraud.yaml, cache off), two Beam settings for the Beam-
based components (ExampleGen, StatisticsGen, Transform, Evaluator):

  in-process        --runner=FnApiRunner (the config's default)
  multi-processing  --runner=DirectRunner --direct_running_mode=multi_processing --direct_num_workers=N
                    (Beam 2.77 tries to download Prism first, fails offline in well under a second,
                    and falls back to the FnApiRunner with N SDK worker processes)

Each variant is a fresh `esteira run` subprocess; per-component seconds come from MLMD. One run per
variant (a 1 M-transaction run takes tens of minutes on 2 cores); the machine's load average before
and after each run is recorded because the machine is shared.

    .venv/bin/python benchmarks/fraud/scale.py --transactions 1000000 --days 1 --work /tmp/fraud-scale
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import secrets
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
NODES = ("AnonymizingExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
         "Evaluator", "Pusher")


def variants(workers: int) -> dict[str, list[str]]:
    return {
        "in-process (FnApiRunner)": ["--runner=FnApiRunner"],
        f"multi-processing (DirectRunner, {workers} workers)": [
            "--runner=DirectRunner", "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"],
    }


def simulate(data: Path, transactions: int, days: int, seed: int) -> dict:
    manifest = data / "manifest.json"
    if manifest.is_file():
        config = json.loads(manifest.read_text())["config"]
        if (config["transactions"], config["days"], config["seed"]) == (transactions, days, seed):
            return json.loads(manifest.read_text())
    subprocess.run([sys.executable, "-m", "cli", "data", "fraud", "--transactions", str(transactions),
                    "--days", str(days), "--seed", str(seed), "--out", str(data), "--overwrite", "--no-progress"],
                   cwd=REPO, check=True)
    return json.loads(manifest.read_text())


def run_variant(work: Path, name: str, beam_args: list[str], data: Path, timeout: int, env: dict) -> dict:
    """One uncached pipeline run in a fresh process; per-node seconds and metrics read back from MLMD."""
    slug = name.split(" ")[0]
    root = work / slug
    doc = yaml.safe_load((REPO / "configs" / "fraud.yaml").read_text())
    doc["pipeline"].update(root=str(root / "pipeline"), metadata_path=str(root / "metadata.db"), enable_cache=False)
    doc["data"]["source"] = str(data)
    doc["serving"]["base_path"] = str(root / "serving")
    doc["runner"]["beam_args"] = beam_args
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "fraud.yaml"
    config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    load_before = os.getloadavg()
    started = time.monotonic()
    with (root / "run.log").open("w") as log:
        result = subprocess.run([sys.executable, "-m", "cli", "run", "--config", str(config_path)],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {result.returncode}); see {root / 'run.log'}")
    from evidence.lineage import open_store, output_artifacts
    from pipeline.report import load_report

    report = load_report(root / "metadata.db", doc["pipeline"]["name"])
    nodes = {e.node: e.seconds for e in report.executions if e.node in NODES}
    store = open_store(root / "metadata.db")
    example_gen = next(e for e in report.executions if e.node == "AnonymizingExampleGen")
    [examples] = output_artifacts(store, example_gen.execution_id, "examples")
    return {"beam_args": beam_args, "nodes": nodes, "components_total": sum(nodes.values()), "process_wall": wall,
            "load_average_before": load_before[0], "load_average_after": os.getloadavg()[0],
            "examples": examples.custom_properties["rows_out"].int_value,
            "auc": report.metrics.get("auc"), "auc_pr": report.metrics.get("auc_precision_recall"),
            "blessed": report.blessed}


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 3.6))
    names, left = list(results), [0.0] * len(results)
    for node in NODES:
        widths = [results[name]["nodes"].get(node, 0.0) for name in names]
        if max(widths) < 0.5:
            continue
        axis.barh(names, widths, left=left, label=node)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axis.set_xlabel("seconds (per component, from MLMD)")
    axis.legend(fontsize=7, ncol=3, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown(report: dict) -> str:
    names = list(report["results"])
    header = "| component | " + " | ".join(names) + " |\n|---|" + "---|" * len(names)
    lines = [f"| {node} | " + " | ".join(f"{report['results'][n]['nodes'].get(node, float('nan')):.1f}"
                                         for n in names) + " |" for node in NODES]
    for key, label in (("components_total", "**components total**"), ("process_wall", "process wall time")):
        lines.append(f"| {label} | " + " | ".join(f"{report['results'][n][key]:.1f}" for n in names) + " |")
    extra = "\n".join(
        f"- {n}: {r['examples']} examples out of ExampleGen; AUC {r['auc']:.4f}, AUC-PR {r['auc_pr']:.4f}, "
        f"blessed {r['blessed']}; load average {r['load_average_before']:.1f} before, "
        f"{r['load_average_after']:.1f} after" for n, r in report["results"].items())
    m = report["machine"]
    return f"""# Fraud pipeline at {report['transactions']:,} transactions: Beam in-process vs multi-processing

Per-component wall time in seconds, one uncached run each, same data (`esteira data fraud --transactions
{report['transactions']} --days {report['days']} --seed {report['seed']}`), configs/fraud.yaml otherwise unchanged.

{header}
{chr(10).join(lines)}

{extra}

- Machine: {m['cpu']}, {m['cpus']} CPUs (shared with other work), {m['platform']}; commit {m['git_commit']}.
- Date: {report['date']}. Command: `{report['command']}`

![per-component time](scale.png)
"""


def write(args: argparse.Namespace, results: dict[str, dict]) -> None:
    from baseline import machine  # benchmarks/fraud/baseline.py: CPU, platform, commit

    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": shlex.join([Path(sys.executable).name, *sys.argv]), "machine": machine(),
              "transactions": args.transactions, "days": args.days, "seed": args.seed, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "scale.png")
    (args.out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "SCALE.md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=1, help="1: every transaction is in the processed span")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/esteira-fraud-scale"))
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per variant")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "fraud" / "results" / "scale")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("ESTEIRA_PSEUDONYM_KEY", secrets.token_hex(32))  # a throwaway key for throwaway data
    data = args.work / "data"
    simulate(data, args.transactions, args.days, args.seed)
    results: dict[str, dict] = {}
    for name, beam_args in variants(args.workers).items():
        print(f"running {name} ...", flush=True)
        results[name] = run_variant(args.work, name, beam_args, data, args.timeout, env)
        write(args, results)  # after each variant, so a cut-off session still leaves what was measured
    print((args.out / "SCALE.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
