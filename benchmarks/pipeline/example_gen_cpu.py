"""The anonymizing ExampleGen alone, old code against new, in CPU seconds (which a busy machine disturbs less).

Each source tree is a `git archive` of a commit (e.g. `git archive e060ea5 | tar -x -C /tmp/old`). Both run
the executor exactly as tests/components/test_example_gen_equivalence.py does (configs/fraud_handbook.yaml's
sections, k-anonymity on, a time split ending on the last span) on the same handbook data, alternately,
each in a fresh process; its user+system CPU seconds come from the kernel (wait4), beside its wall time.

    .venv/bin/python benchmarks/pipeline/example_gen_cpu.py --tree old=/tmp/old --tree new=/tmp/new
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CHILD = """
import os, sys
from pathlib import Path
os.environ["ESTEIRA_PSEUDONYM_KEY"] = "example-gen-cpu-" + "k" * 32
import tests.components.test_example_gen_equivalence as t
t.END_SPAN = {end}
if {train_days}:  # a wider train window: more of the rows read are targets (encoded and written)
    component = t.AnonymizingExampleGen
    t.AnonymizingExampleGen = lambda **kw: component(**{{**kw, "time_split": {{**kw["time_split"],
                                                                            "train_days": {train_days}}}}})
examples = t.run_executor(Path({raw!r}), Path({tmp!r}))
print(examples.get_int_custom_property("rows_in") + examples.get_int_custom_property("context_rows"))
"""


def simulate(raw: Path, customers: int, days: int) -> None:
    if (raw / "manifest.json").is_file():
        return
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                    "from pipeline.datasets.handbook_simulator import HandbookConfig, simulate; "
                    f"simulate(HandbookConfig(customers={customers}, terminals={2 * customers}, days={days}, "
                    f"seed=3), Path({str(raw)!r}), progress=False)"], check=True)


def run_tree(tree: Path, raw: Path, end: int, train_days: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        load = os.getloadavg()[0]
        started = time.monotonic()
        child = CHILD.format(end=end, raw=str(raw), tmp=tmp, train_days=train_days)
        process = subprocess.Popen([sys.executable, "-c", child], cwd=tree, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        assert process.stdout is not None
        rows = process.stdout.read().strip()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"the executor failed in {tree}")
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "rows_read": int(rows.splitlines()[-1]),
            "load_average_before": round(load, 2), "load_average_after": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=DIR",
                        help="a source tree to time (repeatable; the first is the baseline)")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--train-days", type=int, default=0,
                        help="the time split's train window (default 8 days; days - 37 - 7 - 4 reads every day "
                             "as the six-month run does, nearly every row a target)")
    parser.add_argument("--out", default="example_gen_cpu.json", help="file name under results/")
    parser.add_argument("--work", type=Path, default=Path("/tmp/esteira-example-gen-cpu"))
    args = parser.parse_args(argv)
    trees = dict(item.split("=", 1) for item in args.tree)
    raw = args.work / f"handbook-{args.customers}c-{args.days}d"
    simulate(raw, args.customers, args.days)
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.rounds):  # alternated, so the machine's load falls on both alike
        for name, tree in trees.items():
            runs[name].append(run_tree(Path(tree), raw, args.days, args.train_days))
            print(name, runs[name][-1], flush=True)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": shlex.join(["python", *sys.argv]), "platform": platform.platform(), "cpus": os.cpu_count(),
              "data": f"handbook simulator, {args.customers} customers, {args.days} days, seed 3; time split "
                      f"train {args.train_days or 8} / delay 7 / eval 4 days ending on the last span, history 37 days",
              "trees": trees, "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
