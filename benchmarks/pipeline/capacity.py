"""On paper, to 100 M transactions a day: core-hours, memory and wall time of the fraud pipeline on the
Flink layout of k8s/flink/, from the per-component cost per row of a measured one-machine run.

Nothing here is measured: it is arithmetic over a results file a benchmark measured, with each
assumption named in the output (and overridable), so the table is regenerated when new figures land:

    .venv/bin/python benchmarks/pipeline/capacity.py \\
        --results benchmarks/fraud/results/scale/scale.json --entry "in-process (FnApiRunner)"
    .venv/bin/python benchmarks/pipeline/capacity.py \\
        --results benchmarks/pipeline/results/scale.json --entry six_months/<label>

Two results layouts are read: benchmarks/fraud/scale.py's (`results.<entry>.nodes.<component>` in
seconds, `examples` rows out of ExampleGen, `transactions` in) and benchmarks/pipeline/scale.py's
(`six_months.<label>.nodes.<component>.{seconds,peak_rss_mb}`, `rows_read`, `rows_emitted`).
Writes capacity.json and capacity.md beside this script.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# Components whose work is a Beam pipeline over every row: they spread over Flink's slots.
BEAM_PER_ROW = ("AnonymizingExampleGen", "CsvExampleGen", "StatisticsGen", "Transform", "Evaluator")
# Components whose cost does not follow the rows: the Trainer runs a fixed number of steps (TFJob, not Beam),
# the others read a schema, statistics or one model.
FIXED = ("SchemaGen", "ImportSchemaGen", "ExampleValidator", "Trainer", "ModelValidator", "ModelOptimizer",
         "Pusher", "GovernanceReport", "MlflowLogger")


@dataclass(frozen=True)
class Assumptions:
    """Each figure the table needs but no run measured; printed with the table."""

    cores_per_measured_second: float = 1.0  # FnApiRunner in-process: one Python process, one busy core
    parallel_efficiency: float = 0.7        # fraction of a slot's core doing row work on Flink (shuffle, skew)
    beam_job_overhead_s: float = 60.0       # submit, stage artifacts, start SDK workers, per Beam component
    slots: int = 8                          # k8s/flink: 4 TaskManagers x 2 slots
    cores_per_slot: float = 1.0             # one SDK worker process (one Python core) per slot
    run_window_h: float = 4.0               # the nightly window a daily run must fit in
    memory_per_slot_gb: float = 3.0         # k8s/flink: 6-8 GiB SDK worker pool per 2-slot TaskManager


@dataclass(frozen=True)
class Measured:
    """Seconds per component, the rows each one processed, and peak memory where recorded."""

    source: str
    entry: str
    rows_in: int
    rows_out: int
    seconds: dict[str, float]
    peak_mb: dict[str, float]
    machine: str
    date: str


def load_measured(path: Path, entry: str) -> Measured:
    doc = json.loads(path.read_text())
    source = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    machine = doc.get("machine", {})
    described = f"{machine.get('cpu', '?')}, {machine.get('cpus', '?')} CPUs, commit {machine.get('git_commit', '?')}"
    if "results" in doc:  # benchmarks/fraud/scale.py
        if entry not in doc["results"]:
            raise SystemExit(f"{path}: no entry {entry!r}; entries: {', '.join(doc['results'])}")
        run = doc["results"][entry]
        return Measured(source, entry, doc["transactions"], run["examples"], dict(run["nodes"]), {}, described,
                        doc.get("date", "?"))
    group, _, label = entry.partition("/")  # benchmarks/pipeline/scale.py
    runs = doc.get(group, {})
    if label not in runs:
        choices = [f"{g}/{name}" for g in ("six_months", "daily") for name in doc.get(g, {})]
        raise SystemExit(f"{path}: no entry {entry!r}; entries: {', '.join(choices) or 'none yet'}")
    run = runs[label]
    seconds = {node: figures["seconds"] for node, figures in run["nodes"].items()}
    peaks = {node: figures["peak_rss_mb"] for node, figures in run["nodes"].items() if "peak_rss_mb" in figures}
    return Measured(source, entry, run["rows_read"], run["rows_emitted"], seconds, peaks,
                    run.get("machine", described), run.get("date", "?"))


def rows_of(measured: Measured, component: str) -> int:
    """ExampleGen reads every transaction; later components see the examples it wrote."""
    return measured.rows_in if component.endswith("ExampleGen") else measured.rows_out


def capacity(measured: Measured, transactions_per_day: int, assume: Assumptions) -> dict[str, Any]:
    """Core-hours, wall time on the layout's slots, slots for the window, and per-slot memory for one day."""
    scale = transactions_per_day / measured.rows_in
    per_component = {}
    for component, seconds in measured.seconds.items():
        core_s = seconds * assume.cores_per_measured_second
        if component in BEAM_PER_ROW:
            work_core_s = core_s * scale  # linear in the rows
            slot_core_s = work_core_s / assume.parallel_efficiency
            wall_s = assume.beam_job_overhead_s + slot_core_s / (assume.slots * assume.cores_per_slot)
        else:
            slot_core_s, wall_s = core_s, seconds
        per_component[component] = {"core_hours": slot_core_s / 3600, "wall_h": wall_s / 3600,
                                    "per_row_us": (core_s / rows_of(measured, component) * 1e6
                                                   if component in BEAM_PER_ROW else None)}
    core_hours = sum(c["core_hours"] for c in per_component.values())
    wall_h = sum(c["wall_h"] for c in per_component.values())
    beam_core_h = sum(c["core_hours"] for name, c in per_component.items() if name in BEAM_PER_ROW)
    fixed_h = sum(c["wall_h"] for name, c in per_component.items() if name not in BEAM_PER_ROW)
    beam_jobs = sum(1 for name in per_component if name in BEAM_PER_ROW)
    budget_h = assume.run_window_h - fixed_h - beam_jobs * assume.beam_job_overhead_s / 3600
    slots_needed = math.ceil(beam_core_h / assume.cores_per_slot / budget_h) if budget_h > 0 else None
    peak = max((measured.peak_mb.get(name, 0.0) for name in BEAM_PER_ROW), default=0.0)
    return {"transactions_per_day": transactions_per_day, "core_hours": core_hours, "wall_h_on_layout": wall_h,
            "slots_for_window": slots_needed, "task_managers_for_window": (math.ceil(slots_needed / 2)
                                                                           if slots_needed else None),
            "memory_gb_for_window": (slots_needed * assume.memory_per_slot_gb if slots_needed else None),
            "peak_measured_mb": peak or None, "components": per_component}


def markdown(measured: Measured, rows: list[dict[str, Any]], assume: Assumptions, command: str) -> str:
    beam = [name for name in measured.seconds if name in BEAM_PER_ROW]
    out = ["# Capacity on paper: the fraud pipeline at 10 M and 100 M transactions a day", "",
           f"Computed by `{command}` from `{measured.source}` (entry `{measured.entry}`: {measured.rows_in:,} "
           f"transactions in, {measured.rows_out:,} examples out; measured {measured.date} on {measured.machine}). "
           "Nothing in this table was run on a cluster: it scales the measured per-row cost linearly.", "",
           "Measured cost per row (one core, this repository's 2-core machine):", "",
           "| component | rows | seconds | µs per row |", "|---|---:|---:|---:|"]
    for name in beam:
        per_row = measured.seconds[name] * assume.cores_per_measured_second / rows_of(measured, name) * 1e6
        out.append(f"| {name} | {rows_of(measured, name):,} | {measured.seconds[name]:.1f} | {per_row:.0f} |")
    fixed = {name: s for name, s in measured.seconds.items() if name not in BEAM_PER_ROW}
    out += ["", f"Not scaled with rows (as measured, {sum(fixed.values()):.0f} s in all): "
            + ", ".join(f"{name} {s:.1f} s" for name, s in fixed.items()) + ".", "",
            f"On the Flink layout of k8s/flink/ ({assume.slots} slots):", "",
            "| transactions a day | core-hours a day | wall time on the layout | slots to finish in "
            f"{assume.run_window_h:g} h | TaskManagers (2 slots) | SDK worker memory |",
            "|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        slots, memory = row["slots_for_window"], row["memory_gb_for_window"]
        out.append(f"| {row['transactions_per_day'] / 1e6:.0f} M | {row['core_hours']:.1f} | "
                   f"{row['wall_h_on_layout']:.1f} h | {slots or 'n/a'} | "
                   f"{row['task_managers_for_window'] or 'n/a'} | {f'{memory:.0f} GB' if memory else 'n/a'} |")
    peak = rows[0]["peak_measured_mb"]
    out += ["", "Assumptions (flags of the script):", "",
            f"- Every transaction of the day goes through every component once, and a Beam component's work "
            f"grows linearly with its rows ({', '.join(beam)}); the others cost what they cost here.",
            f"- A measured second is {assume.cores_per_measured_second:g} busy core (in-process FnApiRunner: one "
            "Python process); a cluster core is as fast as one of this machine's (shared AMD EPYC vCPUs).",
            f"- On Flink a slot's core does row work {assume.parallel_efficiency:.0%} of the time (shuffles, "
            f"skew, serialization); each Beam component pays {assume.beam_job_overhead_s:g} s to submit, stage "
            "and start its SDK workers.",
            f"- {assume.cores_per_slot:g} core per slot (one SDK worker each) and {assume.memory_per_slot_gb:g} GB "
            "of SDK worker memory per slot, as k8s/flink/ sizes them; the Trainer is a TFJob on its own pods, "
            "with its measured fixed-step time.",
            "- Memory per slot does not grow with the day's rows (a worker holds bundles, not the data set); "
            + (f"the measured one-machine peak over the Beam components was {peak:.0f} MB."
               if peak else "this results file records no memory, so the per-slot figure is the layout's limit, "
                            "not a measurement.")]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    defaults = Assumptions()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks/fraud/results/scale/scale.json")
    parser.add_argument("--entry", default="in-process (FnApiRunner)")
    parser.add_argument("--per-day", type=float, nargs="+", default=[10e6, 100e6])
    parser.add_argument("--out", type=Path, default=HERE)
    for field, value in asdict(defaults).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    assume = Assumptions(**{field: getattr(args, field) for field in asdict(defaults)})
    measured = load_measured(args.results.resolve(), args.entry)
    rows = [capacity(measured, int(per_day), assume) for per_day in args.per_day]
    command = (f"python benchmarks/pipeline/capacity.py --results {measured.source} --entry \"{measured.entry}\"")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "capacity.json").write_text(json.dumps(
        {"source": measured.source, "entry": measured.entry, "assumptions": asdict(assume), "rows": rows},
        indent=2) + "\n")
    (args.out / "capacity.md").write_text(markdown(measured, rows, assume, command))
    print((args.out / "capacity.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
