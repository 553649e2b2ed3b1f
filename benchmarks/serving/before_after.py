"""Serving before and after a change, in the same run: this checkout's ``esteira serve`` against the one of
an earlier commit, on the same model, cells and load generators as ``bench_serving.py``.

A refactoring of the request path claims "no regression"; on a shared machine only a side-by-side run can
show it. Both servers stay up for the whole run and every cell is measured round-robin over both, so a
slow minute of the machine hits both alike. The earlier commit is exported with ``git archive`` into a
temporary folder and run from there with this environment's packages (its own command module: ``cli``
today, ``pipeline.cli`` before the command tree existed).

    python benchmarks/serving/before_after.py --before cc51617^ [--after cc51617] [--seconds 4 --rounds 3]

Writes ``before_after.json`` and ``BEFORE_AFTER.md`` into --out.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_serving import (  # noqa: E402  (the benchmark's folder goes on sys.path first)
    ROOT,
    ROW_COUNTS,
    Cell,
    export_models,
    free_port,
    load_average,
    machine,
    measure,
    progress,
    rows_json,
    run_h2load_grpc,
    run_python_grpc,
    run_wrk,
    start_esteira,
    stop,
    summarize,
    wait_ready,
    write_grpc_frame,
)

# An earlier server counts as no slower when its median req/s is at most this much above ours: the spread
# of one cell between rounds on this machine (bench_serving's recorded rounds vary by 5-10 %).
TOLERANCE = 0.05


def export_tree(ref: str, into: Path) -> tuple[Path, str]:
    """The files of ``ref`` (a commit this repository knows), and the module its ``serve`` command lives in."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT, capture_output=True,
                            text=True)
    if commit.returncode != 0:
        sys.exit(f"--before {ref!r} is not a commit of {ROOT}: give a hash or ref `git log` shows")
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit.stdout.strip()], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    module = "cli" if (into / "cli" / "main.py").exists() else "pipeline.cli"
    return into, module


def short_commit(ref: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def verdict_rows(results: list[dict]) -> list[str]:
    """One table row per cell: before, after, their ratio and whether after is within the tolerance."""
    by_key = {(r["system"], r["api"], r["rows"], r["concurrency"]): r for r in results}
    rows = []
    for (system, api, n, c), after in sorted(by_key.items()):
        if system != "after":
            continue
        before = by_key[("before", api, n, c)]
        ratio = after["req_per_s"] / before["req_per_s"] if before["req_per_s"] else float("inf")
        ok = ratio >= 1 - TOLERANCE
        rows.append(f"| {api} | {n} | {c} | {before['req_per_s']:.0f} ({before['p99_ms']:.2f} ms) | "
                    f"{after['req_per_s']:.0f} ({after['p99_ms']:.2f} ms) | {ratio:.2f} | {'yes' if ok else 'NO'} |")
    return rows


def write_report(out: Path, results: list[dict], meta: dict) -> None:
    (out / "before_after.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    lines = [
        "# Serving before and after",
        "",
        f"Measured {meta['date']} on {meta['machine']}; load average {meta['load_average_before']} before, "
        f"{meta['load_average_after']} after; command: `{meta['command']}`.",
        "",
        f"Before: `{meta['before']}` ({meta['before_commit']}); after: `{meta['after']}` ({meta['after_commit']}). "
        f"Both servers up for the whole run; {meta['rounds']} rounds of {meta['seconds_per_cell']} s per cell, "
        "round-robin over both; the round with the median req/s is shown (p99 of that round). "
        f"gRPC load from {meta['grpc_loadgen']}.",
        "",
        f"| API | rows | clients | before req/s (p99) | after req/s (p99) | after / before | within {TOLERANCE:.0%} |",
        "|---|---|---|---|---|---|---|",
        *verdict_rows(results),
        "",
        f"Failed requests over all rounds: before {sum(r['failures'] for r in results if r['system'] == 'before')}, "
        f"after {sum(r['failures'] for r in results if r['system'] == 'after')}.",
        "",
    ]
    (out / "BEFORE_AFTER.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the earlier commit (hash or ref)")
    parser.add_argument("--after", help="the later commit (default: this checkout as it is, edits included)")
    parser.add_argument("--seconds", type=int, default=4, help="length of one cell in seconds")
    parser.add_argument("--rounds", type=int, default=3, help="measure every cell this many times, round-robin")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated client counts")
    parser.add_argument("--out", type=Path, default=HERE, help="where the results go (default: beside this file)")
    args = parser.parse_args()
    if args.seconds < 1 or args.rounds < 1:
        sys.exit("--seconds and --rounds must be at least 1")
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk (h2load for gRPC: apt-get install -y nghttp2-client)")
    levels = sorted({int(c) for c in args.concurrency.split(",")})
    use_h2load = shutil.which("h2load") is not None
    started = time.monotonic()
    load_before = load_average()
    work = Path(tempfile.mkdtemp(prefix="bench-before-after-"))
    servers: dict[str, subprocess.Popen] = {}
    try:
        before_tree, before_module = export_tree(args.before, work / "before-tree")
        base = export_models(work)
        bodies = {rows: rows_json(rows) for rows in ROW_COUNTS}
        frames = {rows: write_grpc_frame(work / f"predict_{rows}.grpc", rows) for rows in ROW_COUNTS}
        ports = {name: (free_port(), free_port()) for name in ("before", "after")}
        progress(f"starting both servers (before: {args.before} as `python -m {before_module}`)", started)
        servers["before"] = start_esteira(work, base, *ports["before"], tree=before_tree, module=before_module)
        after_tree, after_module = (export_tree(args.after, work / "after-tree") if args.after else (ROOT, "cli"))
        servers["after"] = start_esteira(work, base, *ports["after"], tree=after_tree, module=after_module)
        for name, (_, rest) in ports.items():
            wait_ready(f"http://127.0.0.1:{rest}/v1/models/demo", servers[name])
        progress("both answer; measuring", started)

        def grpc_cell(name: str, rows: int, c: int) -> dict:
            grpc_port, rest_port = ports[name]
            target = f"127.0.0.1:{grpc_port}"
            if use_h2load:
                metrics = f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics"
                return run_h2load_grpc(target, frames[rows], c, args.seconds, metrics)
            return run_python_grpc(target, rows, c, args.seconds)

        cells: list[Cell] = []
        for rows in ROW_COUNTS:
            for c in levels:
                for name, server in servers.items():
                    url = f"http://127.0.0.1:{ports[name][1]}/v1/models/demo:predict"
                    cells.append(((name, "REST", rows, c, "wrk"),
                                  lambda url=url, rows=rows, c=c: run_wrk(url, bodies[rows], c, args.seconds), server))
                    cells.append(((name, "gRPC", rows, c, "h2load" if use_h2load else "grpc_load.py"),
                                  lambda name=name, rows=rows, c=c: grpc_cell(name, rows, c), server))
        results = [summarize(key, runs) for key, runs in measure(cells, args.rounds).items()]
    finally:
        for server in servers.values():
            stop(server)
        shutil.rmtree(work, ignore_errors=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), "before": args.before,
            "before_commit": short_commit(args.before), "after": args.after or "this checkout",
            "after_commit": short_commit(args.after or "HEAD"),
            "command": "python benchmarks/serving/before_after.py " + " ".join(sys.argv[1:]),
            "seconds_per_cell": args.seconds, "rounds": args.rounds, "concurrency": levels,
            "grpc_loadgen": "h2load" if use_h2load else "grpc_load.py",
            "load_average_before": load_before, "load_average_after": load_average(),
            "wall_s": round(time.monotonic() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(args.out, results, meta)
    progress(f"wrote {args.out / 'BEFORE_AFTER.md'}", started)


if __name__ == "__main__":
    main()
