"""The serving benchmark's verdicts and files: results.csv, results.json, throughput.png and RESULTS.md.

Every target is judged from one run's own cells, side by side (these machines are noisy: ratios
within a run, not absolute figures across runs). A hand-written ``analysis.md`` beside the results,
if present, is appended to RESULTS.md (what limits each figure, read from this run).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

SYSTEMS = (("asgi-ceiling", "REST"), ("flask", "REST"), ("kserve", "REST"), ("esteira", "REST"),
           ("grpc-ceiling", "gRPC"), ("esteira", "gRPC"))
LABELS = {"asgi-ceiling": "bare ASGI ceiling", "grpc-ceiling": "bare gRPC servicer", "flask": "Flask",
          "kserve": "KServe ModelServer", "esteira": "Esteira", "esteira-tls": "Esteira, TLS"}
QUIET_LOAD = 1.5  # the p99 target is judged only below this 1-min load average
PROCESSES = Path(__file__).resolve().parent / "processes.json"  # make bench-serving-processes

Verdict = tuple[str, str, str, "bool | None"]  # met None: not judged in this run (the reason in "reached")


def _cell(results: list[dict], system: str, api: str, rows: int, concurrency: int) -> dict:
    found = [r for r in results
             if (r["system"], r["api"], r["rows"], r["concurrency"]) == (system, api, rows, concurrency)]
    if not found:
        raise ValueError(f"no {system} {api} {rows}-row c={concurrency} cell in the results; "
                         "rerun with that concurrency (and a bench_serving.py that measures that system)")
    return found[0]


def _share(part: float, whole: float) -> float:
    return part / whole if whole else float("inf")


def processes_verdict(path: Path = PROCESSES) -> Verdict:
    """1 against 2 server processes at 1-row c=32, from the last ``make bench-serving-processes`` run."""
    target = "2 processes answer more than 1 at 1-row c=32 (REST and gRPC)"
    if not path.exists():
        return target, "not measured: run make bench-serving-processes", "", None
    recorded = json.loads(path.read_text())
    rates = {(r["api"], r["processes"]): r["req_per_s"] for r in recorded["results"]}
    ratios = {api: _share(rates[(api, 2)], rates[(api, 1)]) for api in ("REST", "gRPC") if (api, 1) in rates}
    reached = ", ".join(f"{api} {ratio:.2f}x" for api, ratio in ratios.items())
    meta = recorded["meta"]
    return (target, f"{reached} (PROCESSES.md, {meta['date']}, load {meta['load_average_before']})",
            ", ".join(f"{api} 1 process {rates[(api, 1)]:.0f} req/s" for api in ratios),
            bool(ratios) and all(ratio > 1 for ratio in ratios.values()))


def tls_verdict(results: list[dict]) -> Verdict:
    """What server TLS costs at 1-row c=8: the TLS server's req/s against the plain-text one's, same rounds."""
    target = "TLS costs at most 15 % of the plain-text req/s (1-row c=8)"
    costs, plain = {}, {}
    for api in ("REST", "gRPC"):
        found = [r for r in results
                 if (r["system"], r["api"], r["rows"], r["concurrency"]) == ("esteira-tls", api, 1, 8)]
        if found:
            plain[api] = _cell(results, "esteira", api, 1, 8)["req_per_s"]
            costs[api] = 1 - _share(found[0]["req_per_s"], plain[api])
    if not costs:
        return target, "not measured in this run", "", None
    return (target, ", ".join(f"{api} {100 * cost:.0f} %" for api, cost in costs.items()),
            ", ".join(f"plain text {api} {rate:.0f} req/s" for api, rate in plain.items()),
            all(cost <= 0.15 for cost in costs.values()))


def verdicts(results: list[dict], swap: dict) -> list[Verdict]:
    """(target, reached, baseline in the same run, met) for every speed target of the serving engine."""
    rest1, kserve1 = _cell(results, "esteira", "REST", 1, 8), _cell(results, "kserve", "REST", 1, 8)
    asgi1, grpc1 = _cell(results, "asgi-ceiling", "REST", 1, 8), _cell(results, "esteira", "gRPC", 1, 8)
    bare1 = _cell(results, "grpc-ceiling", "gRPC", 1, 8)
    limit = _cell(results, "in-process", "signature call", 64, 1)["rows_per_s"]
    of_asgi, of_bare = _share(rest1["req_per_s"], asgi1["req_per_s"]), _share(grpc1["req_per_s"], bare1["req_per_s"])
    of_kserve = _share(rest1["req_per_s"], kserve1["req_per_s"])
    out: list[Verdict] = [
        ("REST 1-row c=8 >= 45 % of the bare ASGI ceiling's req/s",
         f"{rest1['req_per_s']:.0f} req/s = {100 * of_asgi:.0f} %", f"ceiling {asgi1['req_per_s']:.0f} req/s",
         of_asgi >= 0.45),
        ("REST 1-row c=8 >= 8x KServe's req/s", f"{rest1['req_per_s']:.0f} req/s = {of_kserve:.1f}x",
         f"KServe {kserve1['req_per_s']:.0f} req/s", of_kserve >= 8),
        ("gRPC 1-row c=8 >= 45 % of the bare gRPC servicer's req/s",
         f"{grpc1['req_per_s']:.0f} req/s = {100 * of_bare:.0f} %", f"servicer {bare1['req_per_s']:.0f} req/s",
         of_bare >= 0.45)]
    for api in ("REST", "gRPC"):
        cell = _cell(results, "esteira", api, 64, 1)
        out.append((f"{api} 64-row c=1 >= 50 % of in-process rows/s",
                    f"{cell['rows_per_s']:.0f} rows/s = {100 * cell['rows_per_s'] / limit:.0f} %",
                    f"in-process {limit:.0f} rows/s", cell["rows_per_s"] >= 0.5 * limit))
    for cell, ceiling in ((rest1, asgi1), (grpc1, bare1)):
        quiet = cell["load_1min"] < QUIET_LOAD
        out.append((f"{cell['api']} 1-row c=8 p99 <= 5 ms at load average < {QUIET_LOAD:g}",
                    f"{cell['p99_ms']:.2f} ms at load {cell['load_1min']:.2f}"
                    + ("" if quiet else f" (not judged: load >= {QUIET_LOAD:g})"),
                    f"{LABELS[ceiling['system']]} {ceiling['p99_ms']:.2f} ms", cell["p99_ms"] <= 5 if quiet else None))
    if swap:
        loads = swap["load_seconds"]
        idle = loads.get("1")
        out.append(("load + warm-up to AVAILABLE <= 0.8 s on an idle server",
                    f"v1 {idle:.3f} s" if idle is not None else "no version 1 load recorded",
                    "under REST + gRPC load: " + ", ".join(f"v{k} {v:.3f} s" for k, v in sorted(loads.items())
                                                            if k != "1"),
                    idle is not None and idle <= 0.8))
    out.append(tls_verdict(results))
    out.append(processes_verdict())
    return out


def swap_check(swap: dict) -> str:
    """The correctness guard measured after the speed cells: no request fails across two version swaps."""
    failed = swap["rest_failures"] + swap["grpc_failures"] + swap["server_errors"]
    inside = swap.get("swaps_inside_load_window", True)
    verdict = "met" if failed == 0 and inside else "NOT MET"
    return (f"0 failed requests across 2 version swaps (REST + gRPC 1-row c=8 each): {verdict}, {failed} failed of "
            f"{swap['rest_requests'] + swap['grpc_requests']} (clients: REST {swap['rest_failures']}, gRPC "
            f"{swap['grpc_failures']}; server non-OK {swap['server_errors']})"
            + ("" if inside else f"; the last swap ended after the {swap['load_window_s']:g} s of load") + ".")


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
             "Systems, all up for the whole measuring phase, one process each: the bare ASGI ceiling (asgi_ceiling.py: "
             "uvicorn with httptools and uvloop, orjson parses the body, predictions of the same shape, no model) and "
             "the bare gRPC servicer (grpc_ceiling.py: grpc.aio decodes the PredictRequest, a PredictResponse of the "
             "same shape, no model); a second Esteira with --ssl_config_file (self-signed P-256 certificate, server "
             "TLS) in the 1-row c=8 cells; Esteira (`esteira serve`, "
             "REST + gRPC, --enable_batching with max_batch_size 256, timeout 0, 2 threads, log level WARNING); "
             "KServe's ModelServer "
             f"({', '.join(kserve['pins'])}, its own virtualenv, {installed}; a custom `kserve.Model` calling the same "
             "signature, one uvicorn worker, per-request logging off, v1 path `/v1/models/demo:predict`); the Flask "
             "baseline (dev server, threaded); the in-process signature call with ready tensors. Model: the demo "
             "model, 30 float features, signature `predict_raw`; every REST server gets the same JSON row-format "
             f"bodies from wrk -t1 (C, closed loop, c connections); both gRPC servers get {meta['grpc_loadgen']} "
             "(closed loop, c connections x 1 stream). `server cores` is the server process's CPU time over the "
             "cell (2 = both cores); `loadgen CPU` the load generator's share of the machine; `load avg` the machine's "
             "1-min load average after the cell.",
             "Files: results.csv, results.json, throughput.png.", *contention(meta, results), "",
             "## Against the targets (same run, side by side)", "",
             "| target | reached | baseline (same run) | met |", "|---|---|---|---|"]
    lines += [f"| {t} | {r} | {b} | {'not judged' if m is None else 'yes' if m else 'NOT MET'} |"
              for t, r, b, m in checks]
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
        lines += ["", "## Version swaps under load", "", swap_check(swap), "", "```", json.dumps(swap, indent=1), "```"]
    analysis = out / "analysis.md"
    if analysis.exists():
        lines += ["", analysis.read_text().rstrip()]
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")
