"""One server process against two (``--server_processes=2``), in the same run: 1-row Predict at c=32.

Both servers (the same flags as ``bench_serving.py``'s Esteira: dynamic batching, metrics) stay up for the
whole run and are measured in interleaved rounds with the same load generators (wrk for REST, h2load for
gRPC when installed). Server CPU counts the parent and all its workers. Before measuring, the 2-process
server is sent requests on new connections until both workers have answered (seen in their own samples
files, PROMETHEUS_MULTIPROC_DIR), which also warms both. Writes processes.json and PROCESSES.md beside
this file, with the machine, the date, the load average before and after, and the command.

    python benchmarks/serving/processes.py [--seconds 5 --rounds 3]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_serving import (  # noqa: E402 - beside this file, not a package
    free_port,
    load_average,
    machine,
    process_cpu,
    rows_json,
    run_h2load_grpc,
    run_wrk,
    start_esteira,
    stop,
    wait_ready,
    write_grpc_frame,
)

CONCURRENCY = 32


def server_cpu(pid: int) -> float:
    """CPU seconds of a server and of its workers."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return process_cpu(pid) + sum(process_cpu(int(child)) for child in children)


def answered_by(directory: Path) -> set[str]:
    """Pids whose samples file counts a Predict call."""
    from prometheus_client.mmap_dict import MmapedDict

    pids = set()
    for path in glob.glob(str(directory / "counter_*.db")):
        for key, value, _, _ in MmapedDict.read_all_values_from_file(path):
            _name, _kind, _help, sample, labels = json.loads(key)
            if sample == "esteira_requests_total" and ["api", "predict"] in labels and value > 0:
                pids.add(Path(path).stem.split("_")[1])
    return pids


def until_every_worker_answers(url: str, body: str, directory: Path, workers: int, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while len(answered_by(directory)) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only workers {sorted(answered_by(directory))} answered within {timeout:.0f} s")
        with httpx.Client() as client:  # a new connection: the kernel picks a worker per connection
            client.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=10)
        time.sleep(0.5)  # the samples files are written every second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of one cell")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median round is reported")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk (h2load for gRPC: apt-get install -y nghttp2-client)")
    use_h2load = shutil.which("h2load") is not None
    load_before = load_average()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-processes-"))
    servers: dict[int, subprocess.Popen] = {}
    try:
        from serving.demo_model import export_demo_model

        base = work / "demo"
        export_demo_model(base, 1, warmup_records=4)
        body, frame = rows_json(1), write_grpc_frame(work / "predict_1.grpc", 1)
        ports = {n: (free_port(), free_port()) for n in (1, 2)}
        shared = work / "metrics"
        shared.mkdir()
        servers[1] = start_esteira(work, base, *ports[1])
        servers[2] = start_esteira(work, base, *ports[2], extra=("--server_processes=2",),
                                   env={"PROMETHEUS_MULTIPROC_DIR": str(shared)})
        for n, (_grpc, rest) in ports.items():
            wait_ready(f"http://127.0.0.1:{rest}/readyz", servers[n])
        until_every_worker_answers(f"http://127.0.0.1:{ports[2][1]}/v1/models/demo:predict", body, shared, 2)
        print(f"[{time.monotonic() - started:6.1f} s] both servers ready, both workers answered; measuring",
              file=sys.stderr, flush=True)
        cells = [(n, "REST") for n in (1, 2)] + ([(n, "gRPC") for n in (1, 2)] if use_h2load else [])
        runs: dict[tuple[int, str], list[dict]] = {cell: [] for cell in cells}
        for _round in range(args.rounds):
            for n, api in cells:
                grpc_port, rest_port = ports[n]
                cpu = server_cpu(servers[n].pid)
                if api == "REST":
                    result = run_wrk(f"http://127.0.0.1:{rest_port}/v1/models/demo:predict", body, CONCURRENCY,
                                     args.seconds)
                else:
                    result = run_h2load_grpc(f"127.0.0.1:{grpc_port}", frame, CONCURRENCY, args.seconds,
                                             f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics")
                result["server_cores"] = (server_cpu(servers[n].pid) - cpu) / result["seconds"]
                result["load_1min"] = os.getloadavg()[0]
                runs[(n, api)].append(result)
        import httpx

        copy = httpx.get(f"http://127.0.0.1:{ports[2][1]}/monitoring/prometheus/metrics").text
        copy_ms = next((float(line.split()[-1]) * 1000 for line in copy.splitlines()
                        if line.startswith("esteira_metrics_copy_seconds ")), None)
    finally:
        for server in servers.values():
            stop(server, 40)
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for (n, api), found in runs.items():
        rates = [r["requests"] / r["seconds"] for r in found]
        median = found[sorted(range(len(found)), key=rates.__getitem__)[len(found) // 2]]
        rows.append({"processes": n, "api": api, "rows": 1, "concurrency": CONCURRENCY,
                     "req_per_s": round(median["requests"] / median["seconds"], 1),
                     "p50_ms": round(median["p50_ms"], 3), "p99_ms": round(median["p99_ms"], 3),
                     "failures": sum(r["failures"] for r in found), "server_cores": round(median["server_cores"], 2),
                     "load_1min": round(median["load_1min"], 2), "rounds_req_per_s": [round(x, 1) for x in rates]})
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), "cores": os.cpu_count(),
            "command": "python benchmarks/serving/processes.py " + " ".join(sys.argv[1:]),
            "seconds_per_cell": args.seconds, "rounds": args.rounds, "load_average_before": load_before,
            "load_average_after": load_average(), "grpc_loadgen": "h2load" if use_h2load else "none",
            "metrics_copy_ms_last": None if copy_ms is None else round(copy_ms, 3)}
    (args.out / "processes.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    write_report(args.out / "PROCESSES.md", meta, rows)
    print(json.dumps({"meta": meta, "results": rows}, indent=2))


def write_report(path: Path, meta: dict, rows: list[dict]) -> None:
    by = {(r["processes"], r["api"]): r for r in rows}
    lines = ["# One server process against two (`--server_processes=2`)", "",
             f"Measured {meta['date']} on {meta['machine']}; load average (1, 5, 15 min) "
             f"{meta['load_average_before']} before, {meta['load_average_after']} after; "
             f"{meta['rounds']} interleaved rounds of {meta['seconds_per_cell']} s per cell, the median round shown.",
             f"Command: `{meta['command']}` (`make bench-serving-processes`).", "",
             "| API | processes | req/s | p50 ms | p99 ms | failures | server cores | every round's req/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['api']} | {r['processes']} | {r['req_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
                     f"{r['failures']} | {r['server_cores']} | {r['rounds_req_per_s']} |")
    lines.append("")
    for api in ("REST", "gRPC"):
        if (1, api) in by and (2, api) in by:
            lines.append(f"{api}, 1 row, c={CONCURRENCY}: 2 processes answer "
                         f"{by[(2, api)]['req_per_s'] / by[(1, api)]['req_per_s']:.2f}x what 1 does.")
    if meta["metrics_copy_ms_last"] is not None:
        lines.append(f"The last copy of a worker's samples to the shared metrics files took "
                     f"{meta['metrics_copy_ms_last']} ms of CPU (esteira_metrics_copy_seconds; once a second, "
                     "on its own thread beside the request path).")
    lines += ["", "The load generator runs on the same cores as the servers (2 here), and other work shared the "
              "machine (the load average above): read the ratio, not the absolute figures."]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
