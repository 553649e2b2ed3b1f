"""The handbook's six months through the whole fraud pipeline, and the daily run's cost by day.

Two measurements on the Fraud Detection Handbook's default data set (`esteira data fraud --profile
handbook --seed 1`: 183 days, about 1.76 M transactions), each an uncached `esteira run` of
configs/fraud_handbook.yaml in a fresh process under a memory sampler:

  six-months   every day read and processed: the time split's train window widened so history (37
               days, what the window features reach back), train, delay (7) and eval (7) cover all
               183 days; every row goes through ExampleGen's anonymization and window features, the
               train and eval rows through StatisticsGen, Transform, Trainer and Evaluator
  daily        the config as shipped (the book's 7/7/7 protocol) on span N, as a daily run on day N
               would be: --days 30 180 measures it at day 30 and day 180 (the span read grows with
               the window, not with the spans before it)

Per component: wall time (MLMD's execution start and end) and peak resident memory of the whole
process tree (sampled every 0.5 s, Beam's worker processes included) over that component's interval.
The machine's load average is recorded before and after every run (the machine is shared).

    .venv/bin/python benchmarks/pipeline/scale.py --measure six-months --label before
    .venv/bin/python benchmarks/pipeline/scale.py --measure daily --days 30 180

Results are merged into benchmarks/pipeline/results/scale.json (one entry per label) and rendered
to SCALE.md and scale.png / daily.png.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import contextlib
import json
import platform
import secrets
import shlex
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = REPO / "configs" / "fraud_handbook.yaml"
HISTORY_DAYS = 37  # window_features.lookback_days: 30-day terminal windows + the 7-day label delay


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    # SOURCE_COMMIT names the code measured when it runs from an exported copy of a commit (git archive)
    commit = os.environ.get("SOURCE_COMMIT") or subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "git_commit": commit}


def ensure_data(data: Path, seed: int) -> dict:
    """The handbook data set, written once (about 20 s) and reused."""
    manifest = data / "manifest.json"
    if not manifest.is_file():
        subprocess.run([sys.executable, "-m", "cli", "data", "fraud", "--profile", "handbook", "--seed",
                        str(seed), "--out", str(data)], cwd=REPO, check=True)
    return json.loads(manifest.read_text())


class TreeMemory:
    """Resident memory of a process and all its descendants, sampled on a thread: (monotonic s, bytes)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self._root = psutil.Process(pid)
        self._interval = interval
        self.samples: list[tuple[float, int]] = []
        self.loads: list[float] = []  # 1-minute load average at each sample
        self.cpu: list[float] = []  # user + system CPU seconds of the tree so far, at each sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            total, cpu = 0, 0.0
            try:
                for process in [self._root, *self._root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # a worker that just ended
                        total += process.memory_info().rss
                        times = process.cpu_times()
                        cpu += times.user + times.system + times.children_user + times.children_system
            except psutil.Error:
                return
            self.samples.append((time.time(), total))
            self.cpu.append(cpu)
            self.loads.append(os.getloadavg()[0])
            self._stop.wait(self._interval)

    def cpu_seconds(self, start: float, end: float) -> float | None:
        """CPU the tree used between two times (to the sampling interval; None when no sample falls inside):
        less disturbed by other work than wall time on a shared machine."""
        inside = [cpu for (at, _), cpu in zip(self.samples, self.cpu, strict=True) if start <= at <= end]
        if not inside:
            return None
        before = [cpu for (at, _), cpu in zip(self.samples, self.cpu, strict=True) if at < start]
        return inside[-1] - (before[-1] if before else inside[0])

    def peak(self, start: float, end: float) -> int:
        inside = [rss for at, rss in self.samples if start <= at <= end]
        return max(inside) if inside else 0


def derived_config(root: Path, data: Path, *, end_span: int | None, train_days: int | None,
                   beam_args: list[str] | None) -> Path:
    doc = yaml.safe_load(CONFIG.read_text())
    doc["pipeline"].update(root=str(root / "pipeline"), metadata_path=str(root / "metadata.db"), enable_cache=False)
    doc["data"]["source"] = str(data)
    doc["data"]["split"]["end_span"] = end_span
    if train_days is not None:
        doc["data"]["split"]["train_days"] = train_days
    doc["serving"]["base_path"] = str(root / "serving")
    doc["governance"]["access_audit_logs"] = [str(root / "serving-audit.log")]
    if beam_args is not None:
        doc["runner"]["beam_args"] = beam_args
    root.mkdir(parents=True, exist_ok=True)
    path = root / "fraud_handbook.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def node_intervals(metadata: Path) -> list[tuple[str, str, float, float]]:
    """(node, state, start epoch s, end epoch s) of every execution of the run, in order."""
    from evidence.lineage import node_name, open_store

    store = open_store(metadata)
    out = []
    for execution in sorted(store.get_executions(), key=lambda e: e.id):
        from ml_metadata.proto import metadata_store_pb2 as mpb

        out.append((node_name(store, execution.id), mpb.Execution.State.Name(execution.last_known_state),
                    execution.create_time_since_epoch / 1000.0, execution.last_update_time_since_epoch / 1000.0))
    return out


def run_once(root: Path, config: Path, timeout: int, env: dict) -> dict:
    """One uncached pipeline run in a fresh process: per-node seconds and peak memory, figures, loads."""
    load_before = os.getloadavg()
    started = time.monotonic()
    with (root / "run.log").open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "cli", "run", "--config", str(config)],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        with TreeMemory(process.pid) as memory:
            returncode = process.wait(timeout=timeout)
    wall = time.monotonic() - started
    load_after = os.getloadavg()
    if returncode != 0:
        raise RuntimeError(f"the run failed (exit {returncode}); see {root / 'run.log'}")
    from evidence.lineage import open_store, output_artifacts
    from pipeline.report import load_report

    doc = yaml.safe_load(config.read_text())
    report = load_report(Path(doc["pipeline"]["metadata_path"]), doc["pipeline"]["name"])
    nodes: dict[str, dict[str, float | str | None]] = {}
    seconds = 0.0
    for node, state, start, end in node_intervals(Path(doc["pipeline"]["metadata_path"])):
        nodes[node] = {"seconds": round(end - start, 3), "state": state,
                       "peak_rss_mb": round(memory.peak(start, end) / 2**20, 1),
                       "cpu_seconds": _rounded(memory.cpu_seconds(start, end))}
        seconds += end - start
    store = open_store(Path(doc["pipeline"]["metadata_path"]))
    example_gen = next(e for e in report.executions if e.node == "AnonymizingExampleGen")
    [examples] = output_artifacts(store, example_gen.execution_id, "examples")
    props = examples.custom_properties
    return {
        "nodes": nodes, "components_total": round(seconds, 1),
        "process_wall": round(wall, 1), "process_cpu_seconds": round(max(memory.cpu, default=0.0), 1),
        "peak_rss_mb": round(max((rss for _, rss in memory.samples), default=0) / 2**20, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "load_average_during": {"mean": round(sum(memory.loads) / max(1, len(memory.loads)), 2),
                                "max": round(max(memory.loads, default=0.0), 2)},
        "rows_read": props["rows_in"].int_value + props["context_rows"].int_value,
        "rows_emitted": props["rows_out"].int_value,
        "spans_read": f"{props['history_first_span'].int_value if 'history_first_span' in props else '?'}-"
                      f"{props['eval_last_span'].int_value}",
        "train_rows": props["train_rows"].int_value, "eval_rows": props["eval_rows"].int_value,
        "metrics": {k: report.metrics.get(k) for k in ("average_precision", "auc", "card_precision_at_100")},
        "blessed": report.blessed,
    }


def load_results() -> dict:
    path = RESULTS / "scale.json"
    return json.loads(path.read_text()) if path.is_file() else {"six_months": {}, "daily": {}}


def save(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results)
    (RESULTS / "SCALE.md").write_text(markdown(results))


def _order(results: dict) -> list[str]:
    nodes: list[str] = []
    for entry in [*results["six_months"].values(), *results["daily"].values()]:
        for node in entry["nodes"]:
            if node not in nodes:
                nodes.append(node)
    return nodes


def plot(results: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if results["six_months"]:
        figure, axis = plt.subplots(figsize=(9, 1.2 + 0.6 * len(results["six_months"])))
        names = list(results["six_months"])
        left = [0.0] * len(names)
        for node in _order(results):
            widths = [results["six_months"][n]["nodes"].get(node, {}).get("seconds", 0.0) for n in names]
            if max(widths) < 2:
                continue
            axis.barh(names, widths, left=left, label=node)
            left = [a + b for a, b in zip(left, widths, strict=True)]
        axis.axvline(600, color="black", linestyle="--", linewidth=1)
        axis.set_xlabel("seconds per component (MLMD); dashed: the 10-minute target")
        axis.legend(fontsize=7, ncol=4, loc="lower right")
        figure.tight_layout()
        figure.savefig(RESULTS / "scale.png", dpi=120)
        plt.close(figure)
    if results["daily"]:
        # seconds against rows read: the daily runs, and the six-month run for what re-reading everything costs
        figure, axis = plt.subplots(figsize=(7, 4))
        points = [(f"day {e['day']}", e) for e in sorted(results["daily"].values(), key=lambda e: e["day"])]
        points += [(name, e) for name, e in results["six_months"].items()]
        for name, entry in points:
            daily = name.startswith("day")
            axis.scatter(entry["rows_read"] / 1e6, entry["components_total"], color="tab:blue" if daily else "tab:gray")
            axis.annotate(f"{name}\nspans {entry['spans_read']}", (entry["rows_read"] / 1e6, entry["components_total"]),
                          fontsize=7, xytext=(4, 4), textcoords="offset points")
        axis.set_xlabel("rows read by ExampleGen (millions)")
        axis.set_ylabel("components' wall time, s")
        axis.set_xlim(left=0)
        axis.set_ylim(bottom=0)
        axis.set_title("daily run on span N (blue) vs all 183 days (gray), configs/fraud_handbook.yaml", fontsize=8)
        figure.tight_layout()
        figure.savefig(RESULTS / "daily.png", dpi=120)
        plt.close(figure)


def _loads(entry: dict) -> str:
    return (f"load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in entry['load_average_before'])} before, "
            f"{'/'.join(f'{x:.1f}' for x in entry['load_average_after'])} after"
            + (f", 1-minute load during the run mean {entry['load_average_during']['mean']:.1f}, "
               f"max {entry['load_average_during']['max']:.1f}" if "load_average_during" in entry else ""))


def _cell(node: dict | None) -> str:
    if node is None:
        return "-"
    cpu = f" / {node['cpu_seconds']:.0f}" if node.get("cpu_seconds") is not None else ""
    return f"{node['seconds']:.1f} / {node['peak_rss_mb']:.0f}{cpu}"


def example_gen_cpu_section() -> list[str]:
    """The ExampleGen alone, old code against new (benchmarks/pipeline/example_gen_cpu.py's results)."""
    out: list[str] = []
    for path in sorted(RESULTS.glob("example_gen_cpu*.json")):
        report = json.loads(path.read_text())
        if not out:
            out += ["## The AnonymizingExampleGen alone, old code against new (CPU seconds)", "",
                    "Each tree's executor in a fresh process, alternately, as tests/components/"
                    "test_example_gen_equivalence.py runs it (`benchmarks/pipeline/example_gen_cpu.py`); CPU "
                    "seconds (user + system, the whole process: about 11 s of it, measured once on the new tree, "
                    "is importing TensorFlow, TFX and Beam) from the kernel, wall seconds, peak resident MB, and the "
                    "1-minute load before and after each run.", ""]
        rows = next(iter(report["runs"].values()))[0]["rows_read"]
        out += [f"**{path.name}**: {report['date']}; {report['data']}; {rows:,} rows read. Command: "
                f"`{report['command']}`" + (f" {report['note']}" if report.get("note") else ""), "",
                "| tree | CPU s | wall s | peak MB | load before / after |", "|---|---|---|---|---|"]
        for name, runs in report["runs"].items():
            for run in runs:
                after = run.get("load_average_after")
                load = f"{run['load_average_before']:.1f}" + (f" / {after:.1f}" if after is not None else "")
                out.append(f"| {name} | {run['cpu_s']:.1f} | {run['wall_s']:.1f} | {run['peak_rss_mb']} | {load} |")
        out.append("")
    return out


def markdown(results: dict) -> str:
    out = ["# The fraud pipeline on the handbook's six months", "",
           "The Fraud Detection Handbook's default data set (`esteira data fraud --profile handbook --seed 1`: 183 "
           "days, 1,764,252 transactions) through every component of configs/fraud_handbook.yaml, each run an "
           "uncached `esteira run` in a fresh process (`benchmarks/pipeline/scale.py`). *Six months*: the time "
           "split's train window widened so that history (37 days, what the window features reach back), train, "
           "delay (7) and eval (7) cover all 183 days, so every row is read, anonymized and given its window "
           "features. *Daily*: the config as shipped (train 7, skip 7, evaluate 7 days) on span N, as the run of "
           "day N: it reads span N and the 57 days before it that its windows and features need, never the "
           "earlier archive.", ""]
    nodes = _order(results)
    for section, title in (("six_months", "## Six months, every day read (183 spans, one run)"),
                           ("daily", "## A daily run on span N (the config as shipped)")):
        entries = results[section]
        if not entries:
            continue
        names = list(entries)
        out += [title, "", "Per component: wall seconds / peak resident MB of the process tree / CPU seconds (user + "
                "system, where recorded: less disturbed than wall time by the other work on the machine).", "",
                "| component | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for node in nodes:
            cells = [entries[n]["nodes"].get(node) for n in names]
            if all(cell is None for cell in cells):
                continue
            out.append(f"| {node} | " + " | ".join(_cell(c) for c in cells) + " |")
        out.append("| **components total** | " + " | ".join(f"**{entries[n]['components_total']:.1f}**"
                                                           for n in names) + " |")
        out.append("| process wall time | " + " | ".join(f"{entries[n]['process_wall']:.1f}" for n in names) + " |")
        out.append("")
        for name in names:
            e = entries[name]
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in e["metrics"].items() if v is not None)
            out.append(f"- **{name}**: {e['date']}, commit {e['machine']['git_commit']}; spans {e['spans_read']}, "
                       f"{e['rows_read']:,} rows read, {e['rows_emitted']:,} emitted (train {e['train_rows']:,}, "
                       f"eval {e['eval_rows']:,}); {metrics}; blessed {e['blessed']}; peak {e['peak_rss_mb']:.0f} MB; "
                       f"{_loads(e)}. Command: `{e['command']}`; beam args {e['beam_args']}"
                       + (f" {e['note']}" if e.get("note") else ""))
        out.append("")
    out += example_gen_cpu_section()
    any_entry = next(iter([*results["six_months"].values(), *results["daily"].values()]))
    m = any_entry["machine"]
    out += [f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gb']} GB, {m['platform']}, Python {m['python']}; "
            "shared with other work, so runs were under `nice -n 15` and each figure carries its load average.", ""]
    if results["six_months"]:
        out += ["![six months per component](scale.png)", ""]
    if results["daily"]:
        out += ["![daily run by day](daily.png)", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", choices=["six-months", "daily"], required=True)
    parser.add_argument("--label", help="name of this measurement in the results (default: the measure)")
    parser.add_argument("--days", type=int, nargs="+", default=[30, 180], help="daily: the spans to run on")
    parser.add_argument("--data", type=Path, default=Path("/tmp/handbook-data/seed-1"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--beam-arg", action="append", dest="beam_args",
                        help="replace the config's runner.beam_args (repeatable)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/esteira-pipeline-scale"))
    parser.add_argument("--timeout", type=int, default=5400, help="seconds per run")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("ESTEIRA_PSEUDONYM_KEY", secrets.token_hex(32))  # a throwaway key for synthetic data
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    manifest = ensure_data(args.data, args.seed)
    spans = len(manifest["spans"])
    results = load_results()
    command = shlex.join(["python", *sys.argv])
    if args.measure == "six-months":
        label = args.label or "six-months"
        root = args.work / label.replace(" ", "-")
        train_days = spans - HISTORY_DAYS - 7 - 7
        config = derived_config(root, args.data, end_span=None, train_days=train_days, beam_args=args.beam_args)
        print(f"{label}: {spans} spans, train window {train_days} days ...", flush=True)
        entry = run_once(root, config, args.timeout, env)
        results["six_months"][label] = {**entry, "train_days": train_days, "date": datetime.now(UTC).isoformat(
            timespec="seconds"), "command": command, "machine": machine(),
            "beam_args": args.beam_args or yaml.safe_load(CONFIG.read_text())["runner"]["beam_args"]}
        save(results)
    else:
        for day in args.days:
            label = f"{args.label + ', ' if args.label else ''}day {day}"
            root = args.work / label.replace(" ", "-").replace(",", "")
            config = derived_config(root, args.data, end_span=day, train_days=None, beam_args=args.beam_args)
            print(f"{label} ...", flush=True)
            entry = run_once(root, config, args.timeout, env)
            results["daily"][label] = {**entry, "day": day, "date": datetime.now(UTC).isoformat(timespec="seconds"),
                                       "command": command, "machine": machine(),
                                       "beam_args": args.beam_args or yaml.safe_load(CONFIG.read_text())["runner"][
                                           "beam_args"]}
            save(results)
    print((RESULTS / "SCALE.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
