"""The serving benchmark's verdicts and files: results.csv, results.json, throughput.png and RESULTS.md.

Every target is judged from one run's own cells, side by side (these machines are noisy: ratios
within a run, not absolute figures across runs). A hand-written ``analysis.md`` beside the results,
if present, is appended to RESULTS.md (what limits each figure, read from this run).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

SYSTEMS = (("flask", "REST"), ("kserve", "REST"), ("esteira", "REST"), ("esteira", "gRPC"))
LABELS = {"flask": "Flask", "kserve": "KServe ModelServer", "esteira": "Esteira"}


def _cell(results: list[dict], system: str, api: str, rows: int, concurrency: int) -> dict:
    found = [r for r in results
             if (r["system"], r["api"], r["rows"], r["concurrency"]) == (system, api, rows, concurrency)]
    if not found:
        raise ValueError(f"no {system} {api} {rows}-row c={concurrency} cell in the results; "
                         "rerun with that concurrency")
    return found[0]


def verdicts(results: list[dict], swap: dict) -> list[tuple[str, str, str, bool]]:
    """(target, reached, baseline in the same run, met) for every target."""
    rest1, kserve1 = _cell(results, "esteira", "REST", 1, 8), _cell(results, "kserve", "REST", 1, 8)
    limit = _cell(results, "in-process", "signature call", 64, 1)["rows_per_s"]
    ratio = rest1["req_per_s"] / kserve1["req_per_s"] if kserve1["req_per_s"] else float("inf")
    out = [("REST 1-row c=8 >= 12x KServe req/s", f"{rest1['req_per_s']:.0f} req/s = {ratio:.1f}x",
            f"KServe {kserve1['req_per_s']:.0f} req/s", ratio >= 12),
           ("REST 1-row c=8 p99 <= 5 ms", f"{rest1['p99_ms']:.2f} ms", f"KServe {kserve1['p99_ms']:.2f} ms",
            rest1["p99_ms"] <= 5)]
    for api in ("REST", "gRPC"):
        cell = _cell(results, "esteira", api, 64, 1)
        out.append((f"{api} 64-row c=1 >= 50 % of in-process rows/s",
                    f"{cell['rows_per_s']:.0f} rows/s = {100 * cell['rows_per_s'] / limit:.0f} %",
                    f"in-process {limit:.0f} rows/s", cell["rows_per_s"] >= 0.5 * limit))
    rest64, grpc64 = _cell(results, "esteira", "REST", 64, 8), _cell(results, "esteira", "gRPC", 64, 8)
    out.append(("gRPC 64-row c=8 >= REST", f"gRPC {grpc64['rows_per_s']:.0f} rows/s",
                f"REST {rest64['rows_per_s']:.0f} rows/s", grpc64["rows_per_s"] >= rest64["rows_per_s"]))
    if swap:
        failed = swap["rest_failures"] + swap["grpc_failures"] + swap["server_errors"]
        inside = swap.get("swaps_inside_load_window", True)
        out.append(("0 failed requests across 2 version swaps (REST + gRPC 1-row c=8 each)",
                    f"{failed} failed of {swap['rest_requests'] + swap['grpc_requests']}"
                    + ("" if inside else f"; the last swap ended after the {swap['load_window_s']:g} s of load"),
                    f"clients: REST {swap['rest_failures']}, gRPC {swap['grpc_failures']}; "
                    f"server non-OK {swap['server_errors']}",
                    failed == 0 and inside))
        loads = swap["load_seconds"]
        worst = max(loads.values()) if loads else float("inf")
        out.append(("load + warm-up to AVAILABLE <= 0.8 s",
                    f"worst {worst:.3f} s (" + ", ".join(f"v{k} {v:.3f}" for k, v in sorted(loads.items())) + ")",
                    "publish -> AVAILABLE incl. up to 1 s poll: "
                    + ", ".join(f"v{k} {v:.2f} s" for k, v in swap["publish_to_available_s"].items()),
                    worst <= 0.8))
    return out


def plot(path: Path, results: list[dict], meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, rows in zip(axes, (1, 64), strict=True):
        for system, api in SYSTEMS:
            points = sorted((r["concurrency"], r["rows_per_s"]) for r in results
                            if (r["system"], r["api"], r["rows"]) == (system, api, rows))
            ax.plot([c for c, _ in points], [v for _, v in points], marker="o", label=f"{LABELS[system]} {api}")
        limit = next(r["rows_per_s"] for r in results if r["system"] == "in-process" and r["rows"] == rows)
        ax.axhline(limit, linestyle="--", color="grey", label="in-process signature call")
        ax.set_xscale("log", base=2)
        ax.set_xticks(meta["concurrency"], [str(c) for c in meta["concurrency"]])
        ax.set_yscale("log")
        ax.set_title(f"{rows}-row requests")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("rows / s (log)")
        ax.legend(fontsize=8)
    fig.suptitle(f"Serving throughput, {meta['date']} (servers and load generators share the machine's cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def contention(meta: dict, results: list[dict]) -> list[str]:
    """A warning line when the machine had more runnable work than cores: then absolute figures are low
    and latencies long for every system alike, and only the ratios within the run carry over."""
    cores = meta.get("cores")
    busiest = max([float(meta[key].split()[0]) for key in ("load_average_before", "load_average_after")]
                  + [r.get("load_1min", 0.0) for r in results])
    if not cores or busiest <= cores:
        return []
    return ["", f"**Shared machine:** 1-min load average up to {busiest:.1f} on {cores} cores during this run: every "
                "system got a fraction of the CPU, so req/s are low and p99s long across the board; compare ratios "
                "within the run, and rerun on a quiet machine before reading absolute figures or the p99 target."]


def write_outputs(out: Path, results: list[dict], swap: dict, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    checks = verdicts(results, swap)
    (out / "results.json").write_text(json.dumps(
        {"meta": meta, "results": results, "swap": swap,
         "targets": [dict(zip(("target", "reached", "baseline", "met"), c, strict=True)) for c in checks]}, indent=1))
    plot(out / "throughput.png", results, meta)
    kserve = meta["kserve_env"]
    installed = "reused" if kserve["reused"] else f"installed from PyPI in {kserve['install_s']:g} s"
    lines = ["# Serving benchmark results", "",
             f"Machine: {meta['machine']}, Python {meta['python']}; shared with other work: load average "
             f"{meta['load_average_before']} before the run, {meta['load_average_after']} after (1/5/15 min). "
             f"Date: {meta['date']}; the run took {meta['wall_s']:g} s.",
             f"Command: `{meta['command']}`; {meta['seconds_per_cell']:g} s per cell, "
             f"{meta['rounds']} round(s) round-robin over every cell of every system, the round with the median req/s "
             "reported (every round's req/s in the last column).",
             "Systems, all up for the whole measuring phase, one process each: Esteira (`esteira serve`, "
             "REST + gRPC, --enable_batching with max_batch_size 256, timeout 0, 2 threads, log level WARNING); "
             "KServe's ModelServer "
             f"({', '.join(kserve['pins'])}, its own virtualenv, {installed}; a custom `kserve.Model` calling the same "
             "signature, one uvicorn worker, per-request logging off, v1 path `/v1/models/demo:predict`); the Flask "
             "baseline (dev server, threaded); the in-process signature call with ready tensors. Model: the demo "
             "model, 30 float features, signature `predict_raw`; every REST server gets the same JSON row-format "
             f"bodies from wrk -t1 (C, closed loop, c connections); Esteira's gRPC Predict gets {meta['grpc_loadgen']} "
             "(closed loop, c connections x 1 stream). `server cores` is the server process's CPU time over the "
             "cell (2 = both cores); `loadgen CPU` the load generator's share of the machine; `load avg` the machine's "
             "1-min load average after the cell.",
             "Files: results.csv, results.json, throughput.png.", *contention(meta, results), "",
             "## Against the targets (same run, side by side)", "",
             "| target | reached | baseline (same run) | met |", "|---|---|---|---|"]
    lines += [f"| {t} | {r} | {b} | {'yes' if m else 'NOT MET'} |" for t, r, b, m in checks]
    lines += ["", "## All cells", "",
              "| system | api | rows | conc | req/s | rows/s | p50 ms | p99 ms | failed | load generator "
              "| loadgen CPU | server cores | load avg | req/s per round |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {LABELS.get(r['system'], r['system'])} | {r['api']} | {r['rows']} | {r['concurrency']} "
              f"| {r['req_per_s']} | {r['rows_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['failures']} "
              f"| {r['loadgen']} | {r['loadgen_cpu_share']:.0%} | {r['server_cores']:.2f} | {r.get('load_1min', '')} "
              f"| {' / '.join(f'{x:g}' for x in r['rounds_req_per_s'])} |"
              for r in results]
    if swap:
        lines += ["", "## Version swaps under load", "", "```", json.dumps(swap, indent=1), "```"]
    analysis = out / "analysis.md"
    if analysis.exists():
        lines += ["", analysis.read_text().rstrip()]
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")
