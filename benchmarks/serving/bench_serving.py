"""Serving benchmark: Flask baseline vs Esteira REST vs Esteira gRPC vs the in-process signature call.

One run, one model (the demo model: 30 float features, the size of the pipeline's), same load
generators for every server: wrk (C, closed loop) for REST and h2load (C, closed loop; grpc_load.py on
grpc.aio where h2load is missing) for gRPC. Esteira runs twice, on its native transports and on the
fallback ones (asyncio REST, grpcio gRPC), measured in the same rounds. Server and load generator share
this machine's cores; the generator's CPU share is recorded.
Writes results.csv, results.json and throughput.png next to this file.

    python benchmarks/serving/bench_serving.py [--seconds 4]
    python benchmarks/serving/bench_serving.py --report-only   # re-render RESULTS.md after editing analysis.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def rows_json(count: int) -> str:
    from serving.demo_model import raw_row

    return json.dumps({"signature_name": "predict_raw", "instances": [raw_row(i) for i in range(count)]})


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, body: str, concurrency: int, seconds: float) -> dict:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n')
    before = children_cpu()
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(int(seconds), 1)}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    cpu = children_cpu() - before
    script.unlink()

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    failed = int(re.search(r"Non-2xx or 3xx responses: (\d+)", out).group(1)) if "Non-2xx" in out else 0
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"requests": requests, "failures": failed + errors, "seconds": seconds,
            "p50_ms": ms("50"), "p99_ms": ms("99"), "loadgen_cpu_s": cpu}


def run_h2load_grpc(target: str, frame: Path, concurrency: int, seconds: float, metrics_url: str) -> dict:
    """gRPC Predict load from h2load (C, closed loop, one stream per connection like wrk's connections).

    h2load sees HTTP status only; gRPC errors travel in trailers, so failures are the server's own
    non-OK request count over the cell (nothing else talks to the server meanwhile)."""
    log = Path(tempfile.mkstemp(suffix=".log")[1])
    errors_before = server_errors(metrics_url)
    before = children_cpu()
    out = subprocess.run(["h2load", "-c", str(concurrency), "-m", "1", "-t", "1", "-D", str(max(int(seconds), 1)),
                          "-d", str(frame), "-H", "content-type: application/grpc", "-H", "te: trailers",
                          "--log-file", str(log), f"http://{target}/tensorflow.serving.PredictionService/Predict"],
                         capture_output=True, text=True, check=True).stdout
    cpu = children_cpu() - before
    durations = []
    bad_status = 0
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            durations.append(int(parts[2]) / 1000)
            bad_status += parts[1] != "200"
    log.unlink()
    failed = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    h2_failed = sum(int(x) for x in failed.groups()) if failed else 0
    import numpy as np

    lat = np.array(durations or [0.0])
    elapsed = float(re.search(r"finished in ([\d.]+)s", out).group(1)) if "finished in" in out else seconds
    return {"requests": len(durations), "failures": bad_status + h2_failed + server_errors(metrics_url) - errors_before,
            "seconds": elapsed, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "loadgen_cpu_s": cpu}


def run_python_grpc(target: str, rows: int, concurrency: int, seconds: float) -> dict:
    out = subprocess.run([PY, str(HERE / "grpc_load.py"), target, str(rows), str(concurrency), str(seconds)],
                         capture_output=True, text=True, check=True, env=ENV).stdout
    return json.loads(out.strip().splitlines()[-1])  # loadgen_cpu_s: its own CPU after its imports


def server_errors(metrics_url: str) -> int:
    import httpx

    text = httpx.get(metrics_url, timeout=10).text
    return sum(int(float(m.group(2))) for m in re.finditer(r'^esteira_requests_total\{([^}]*)\} ([\d.e+]+)$', text, re.M)
               if 'code="OK"' not in m.group(1) and 'api="predict"' in m.group(1))  # not the bench's own status polls


def server_errors_by_code(metrics_url: str) -> dict[str, int]:
    """Non-OK requests the server counted, by entrypoint, API and status code (what failed, not just how many)."""
    import httpx

    text = httpx.get(metrics_url, timeout=10).text
    out: dict[str, int] = {}
    for m in re.finditer(r'^esteira_requests_total\{([^}]*)\} ([\d.e+]+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("code") != "OK":
            key = f"{labels.get('entrypoint')} {labels.get('api')} v{labels.get('version')} {labels.get('code')}"
            out[key] = out.get(key, 0) + int(float(m.group(2)))
    return out


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def in_process(model_dir: Path, rows: int, seconds: float, flat: bool = False) -> dict:
    """The signature called in this process with tensors built beforehand: no parsing, no network.
    ``flat`` uses the private flat entry point the server uses (shown for reference, not the target's limit)."""
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(str(model_dir)).signatures["predict_raw"]
    rng = np.random.default_rng(0)
    inputs = {f"feature_{i}": tf.constant(rng.normal(size=rows).astype(np.float32)) for i in range(30)}
    if flat:
        public, ordered = signature, [inputs[k] for k in sorted(inputs)]
        signature = lambda **_: public._call_flat(ordered, public.captured_inputs)  # noqa: E731
    signature(**inputs)
    count, latencies = 0, []
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        signature(**inputs)
        latencies.append(time.perf_counter() - t0)
        count += 1
    elapsed = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {"requests": count, "failures": 0, "seconds": elapsed, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "loadgen_cpu_s": 0.0}


TARGETS = ("REST 1-row c=8 req/s >= 5x Flask, p99 <= 3 ms; gRPC 1-row c=8 >= 2.5x Flask; 64-row rows/s >= 50 % of "
           "in-process over REST and gRPC, gRPC >= REST; 0 failed requests across swaps; load to AVAILABLE <= 0.8 s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure every cell this many times, round-robin over the cells of a system; "
                             "the round with the median req/s is reported (this machine's speed drifts)")
    parser.add_argument("--report-only", action="store_true",
                        help="re-render RESULTS.md from the recorded results.json (e.g. after editing analysis.md); measures nothing")
    args = parser.parse_args()
    if args.report_only:
        recorded = json.loads((HERE / "results.json").read_text())
        meta = recorded["meta"]
        args.seconds = meta["seconds_per_cell"]
        args.rounds = meta.get("rounds", 1)
        write_outputs(recorded["results"], recorded["swap"], args, meta["load_average_before"], meta["load_average_after"], meta=meta)
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    use_h2load = shutil.which("h2load") is not None
    from serving.demo_model import export_demo_model

    load_before = load_average()
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    base = work / "demo"
    export_demo_model(base, 1, warmup_records=4)
    for version in (2, 3):  # published into base/ while the server is under load
        export_demo_model(work / "staging", version, bias=float(version - 1), warmup_records=4)
    batching = work / "batching.config"
    batching.write_text("max_batch_size { value: 256 } batch_timeout_micros { value: 0 } "
                        "num_batch_threads { value: 2 } max_enqueued_batches { value: 1000 }")
    monitoring = work / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }")
    levels = [int(c) for c in args.concurrency.split(",")]
    results: list[dict] = []
    bodies = {1: rows_json(1), 64: rows_json(64)}
    frames = {}
    for rows in (1, 64):
        frames[rows] = work / f"predict_{rows}.grpc"
        subprocess.run([PY, str(HERE / "grpc_load.py"), "--write-frame", str(rows), str(frames[rows])], env=ENV, check=True)

    def record(system: str, api: str, rows: int, concurrency: int, runs: list[dict], loadgen: str) -> None:
        """One row per cell: the round with the median req/s (its own p50/p99), every round's req/s beside it,
        failures summed over all rounds."""
        rates = [r["requests"] / r["seconds"] for r in runs]
        r = runs[sorted(range(len(runs)), key=rates.__getitem__)[len(runs) // 2]]
        rps = r["requests"] / r["seconds"]
        row = {"system": system, "api": api, "rows": rows, "concurrency": concurrency, "req_per_s": round(rps, 1),
               "rows_per_s": round(rps * rows, 1), "p50_ms": round(r["p50_ms"], 3), "p99_ms": round(r["p99_ms"], 3),
               "failures": sum(run["failures"] for run in runs), "loadgen": loadgen,
               "loadgen_cpu_share": round(r["loadgen_cpu_s"] / ((os.cpu_count() or 1) * r["seconds"]), 3),
               "rounds_req_per_s": [round(x, 1) for x in rates]}
        results.append(row)
        print(json.dumps(row), flush=True)

    def measure(cells: list[tuple[tuple, object]]) -> dict[tuple, list[dict]]:
        """Every cell ``args.rounds`` times, round-robin over all systems, so a slow minute of the machine hits
        the limit, the baseline and Esteira alike."""
        runs: dict[tuple, list[dict]] = {key: [] for key, _ in cells}
        for _ in range(args.rounds):
            for key, run in cells:
                runs[key].append(run())  # type: ignore[operator]
        return runs

    # Both servers stay up for the whole run, so every cell can be measured in the same rounds: the in-process
    # limit, the Flask baseline and Esteira side by side within minutes, not one system after another.
    port = free_port()
    flask = subprocess.Popen([PY, str(HERE / "flask_baseline.py"), str(base / "1"), str(port)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rest, grpc_port = free_port(), free_port()
    started = time.monotonic()

    def esteira(grpc: int, rest_port: int, poll_seconds: int, transport: str, grpc_transport: str) -> subprocess.Popen:
        return subprocess.Popen([PY, "-m", "pipeline.cli", "serve", f"--port={grpc}", f"--rest_api_port={rest_port}",
                                 "--host=127.0.0.1", "--model_name=demo", f"--model_base_path={base}",
                                 f"--file_system_poll_wait_seconds={poll_seconds}",
                                 "--enable_batching", f"--batching_parameters_file={batching}",
                                 f"--monitoring_config_file={monitoring}", "--log_level=WARNING",
                                 f"--rest_api_http_transport={transport}", f"--grpc_transport={grpc_transport}"],
                                env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    server = esteira(grpc_port, rest, 1, "native", "native")
    # The same server on the fallback transports, REST on asyncio and gRPC on grpcio (no polling: it sits out
    # the swaps), to show what the native transports change.
    asyncio_rest, grpcio_port = free_port(), free_port()
    asyncio_server = esteira(grpcio_port, asyncio_rest, 0, "asyncio", "grpcio")
    swap: dict = {}
    try:
        wait_http(f"http://127.0.0.1:{rest}/readyz")
        import httpx

        while httpx.get(f"http://127.0.0.1:{rest}/readyz").status_code != 200:
            time.sleep(0.05)
        startup_s = time.monotonic() - started
        wait_http(f"http://127.0.0.1:{port}/")
        wait_http(f"http://127.0.0.1:{asyncio_rest}/readyz")
        while httpx.get(f"http://127.0.0.1:{asyncio_rest}/readyz").status_code != 200:
            time.sleep(0.05)
        asyncio_url = f"http://127.0.0.1:{asyncio_rest}/v1/models/demo:predict"
        url = f"http://127.0.0.1:{rest}/v1/models/demo:predict"
        flask_url = f"http://127.0.0.1:{port}/v1/models/demo:predict"
        metrics_url = f"http://127.0.0.1:{rest}/monitoring/prometheus/metrics"
        target = f"127.0.0.1:{grpc_port}"

        def grpc_cell(rows: int, c: int, seconds: float, fallback: bool = False) -> dict:
            to = f"127.0.0.1:{grpcio_port}" if fallback else target
            if use_h2load:
                metrics = f"http://127.0.0.1:{asyncio_rest}/monitoring/prometheus/metrics" if fallback else metrics_url
                return run_h2load_grpc(to, frames[rows], c, seconds, metrics)
            return run_python_grpc(to, rows, c, seconds)

        loadgen = "h2load" if use_h2load else "grpc_load.py"
        # 1. in-process limit: the signature called directly with ready tensors, no serving around it;
        # 2. the Flask baseline; 3. Esteira REST + gRPC (same server process)
        cells: list = [(("in-process", "signature call", rows, 1, "none"),
                        lambda rows=rows: in_process(base / "1", rows, args.seconds)) for rows in (1, 64)]
        cells += [(("in-process", "flat call (reference)", rows, 1, "none"),
                   lambda rows=rows: in_process(base / "1", rows, args.seconds / 2, flat=True)) for rows in (1, 64)]
        cells += [(("flask", "REST", rows, c, "wrk"), lambda rows=rows, c=c: run_wrk(flask_url, bodies[rows], c, args.seconds))
                  for rows in (1, 64) for c in levels]
        for rows in (1, 64):
            for c in levels:
                cells.append((("esteira", "REST", rows, c, "wrk"), lambda rows=rows, c=c: run_wrk(url, bodies[rows], c, args.seconds)))
                cells.append((("esteira", "gRPC", rows, c, loadgen), lambda rows=rows, c=c: grpc_cell(rows, c, args.seconds)))
                cells.append((("esteira-asyncio", "REST", rows, c, "wrk"),
                              lambda rows=rows, c=c: run_wrk(asyncio_url, bodies[rows], c, args.seconds)))
                cells.append((("esteira-grpcio", "gRPC", rows, c, loadgen),
                              lambda rows=rows, c=c: grpc_cell(rows, c, args.seconds, fallback=True)))
        for (system, api, rows, c, generator), runs in measure(cells).items():
            record(system, api, rows, c, runs, generator)
        for other in (flask, asyncio_server):
            other.terminate()
            other.wait(10)
        # 4. version swaps under REST + gRPC load: publish version 2, then 3, while both generators run
        import threading

        holder: dict = {}
        window = 10.0
        errors_before = server_errors(metrics_url)
        threads = [threading.Thread(target=lambda: holder.update(rest=run_wrk(url, bodies[1], 8, window))),
                   threading.Thread(target=lambda: holder.update(grpc=grpc_cell(1, 8, window)))]
        for thread in threads:
            thread.start()
        to_available = {}
        for version in (2, 3):
            time.sleep(2.0)
            published = time.monotonic()
            (work / "staging" / str(version)).rename(base / str(version))
            while time.monotonic() - published < 30:
                status = httpx.get(f"http://127.0.0.1:{rest}/v1/models/demo/versions/{version}")
                if status.status_code == 200 and status.json()["model_version_status"][0]["state"] == "AVAILABLE":
                    break
                time.sleep(0.01)
            to_available[str(version)] = round(time.monotonic() - published, 3)
        for thread in threads:
            thread.join()
        status = httpx.get(f"http://127.0.0.1:{rest}/v1/models/demo").json()["model_version_status"]
        metrics = httpx.get(metrics_url).text
        loads = {m.group(1): float(m.group(2)) for m in
                 re.finditer(r'esteira_model_load_seconds\{model="demo",version="(\d+)"\} ([\d.]+)', metrics)}
        swap = {"rest_requests": holder["rest"]["requests"], "rest_failures": holder["rest"]["failures"],
                "grpc_requests": holder["grpc"]["requests"], "grpc_failures": holder["grpc"]["failures"],
                "server_errors": server_errors(metrics_url) - errors_before,
                "server_non_ok_since_start": server_errors_by_code(metrics_url),
                "rest_p99_ms": round(holder["rest"]["p99_ms"], 3), "grpc_p99_ms": round(holder["grpc"]["p99_ms"], 3),
                "states": {s["version"]: s["state"] for s in status}, "load_seconds": loads,
                "publish_to_available_s": to_available, "poll_interval_s": 1,
                "process_start_to_ready_s": round(startup_s, 3)}
        print(json.dumps({"swap": swap}), flush=True)
    finally:
        server.terminate()
        server.wait(20)
        for other in (flask, asyncio_server):
            if other.poll() is None:
                other.terminate()
                other.wait(10)
    shutil.rmtree(work, ignore_errors=True)
    write_outputs(results, swap, args, load_before, load_average())


def _cell(results: list[dict], system: str, api: str, rows: int, concurrency: int) -> dict:
    return next(r for r in results if (r["system"], r["api"], r["rows"], r["concurrency"]) == (system, api, rows, concurrency))


def verdicts(results: list[dict], swap: dict) -> list[tuple[str, str, str, bool]]:
    """(target, reached, baseline, met) per target, all from this run."""
    flask1 = _cell(results, "flask", "REST", 1, 8)
    rest1, grpc1 = _cell(results, "esteira", "REST", 1, 8), _cell(results, "esteira", "gRPC", 1, 8)
    limit = _cell(results, "in-process", "signature call", 64, 1)["rows_per_s"]
    out = [
        ("REST 1-row c=8 >= 5x Flask req/s", f"{rest1['req_per_s']:.0f} req/s = {rest1['req_per_s'] / flask1['req_per_s']:.2f}x",
         f"Flask {flask1['req_per_s']:.0f} req/s", rest1["req_per_s"] >= 5 * flask1["req_per_s"]),
        ("REST 1-row c=8 p99 <= 3 ms", f"{rest1['p99_ms']:.2f} ms", f"Flask {flask1['p99_ms']:.2f} ms", rest1["p99_ms"] <= 3),
        ("gRPC 1-row c=8 >= 2.5x Flask req/s", f"{grpc1['req_per_s']:.0f} req/s = {grpc1['req_per_s'] / flask1['req_per_s']:.2f}x",
         f"Flask {flask1['req_per_s']:.0f} req/s", grpc1["req_per_s"] >= 2.5 * flask1["req_per_s"]),
    ]
    for c in sorted({r["concurrency"] for r in results if r["rows"] == 64 and r["system"] == "esteira"}):
        rest64, grpc64 = _cell(results, "esteira", "REST", 64, c), _cell(results, "esteira", "gRPC", 64, c)
        for api, cell in (("REST", rest64), ("gRPC", grpc64)):
            out.append((f"{api} 64-row c={c} >= 50 % of in-process rows/s", f"{cell['rows_per_s']:.0f} rows/s = {100 * cell['rows_per_s'] / limit:.0f} %",
                        f"in-process {limit:.0f} rows/s", cell["rows_per_s"] >= 0.5 * limit))
        out.append((f"gRPC >= REST, 64-row c={c}", f"gRPC {grpc64['rows_per_s']:.0f} vs REST {rest64['rows_per_s']:.0f} rows/s", "",
                     grpc64["rows_per_s"] >= rest64["rows_per_s"]))
    if swap:
        failed = swap["rest_failures"] + swap["grpc_failures"]
        out.append(("0 failed requests across 2 swaps (REST + gRPC c=8 each)",
                    f"{failed} failed of {swap['rest_requests'] + swap['grpc_requests']}", "", failed == 0))
        worst = max(swap["load_seconds"].values()) if swap["load_seconds"] else float("nan")
        out.append(("model load (load + warm-up) to AVAILABLE <= 0.8 s",
                    f"worst {worst:.3f} s (" + ", ".join(f"v{k} {v:.3f}" for k, v in sorted(swap["load_seconds"].items())) + ")",
                    "publish->AVAILABLE incl. up to 1 s poll: " + ", ".join(f"v{k} {v:.2f} s" for k, v in swap["publish_to_available_s"].items()),
                    worst <= 0.8))
    return out


def write_outputs(results: list[dict], swap: dict, args: argparse.Namespace, load_before: str, load_after: str,
                  meta: dict | None = None) -> None:
    import csv

    with open(HERE / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    meta = meta or {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, {platform.platform()}", "python": platform.python_version(),
            "command": "python benchmarks/serving/bench_serving.py " + " ".join(sys.argv[1:]), "seconds_per_cell": args.seconds,
            "rounds": getattr(args, "rounds", 1),
            "load_average_before": load_before, "load_average_after": load_after}
    checks = verdicts(results, swap)
    (HERE / "results.json").write_text(json.dumps({"meta": meta, "results": results, "swap": swap,
                                                   "targets": [dict(zip(("target", "reached", "baseline", "met"), c)) for c in checks]}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, rows in zip(axes, (1, 64)):
        for system, api in (("flask", "REST"), ("esteira-asyncio", "REST"), ("esteira-grpcio", "gRPC"), ("esteira", "REST"),
                            ("esteira", "gRPC")):
            points = [r for r in results if r["system"] == system and r["api"] == api and r["rows"] == rows]
            ax.plot([p["concurrency"] for p in points], [p["rows_per_s"] for p in points], marker="o", label=f"{system} {api}")
        limit = next(r["rows_per_s"] for r in results if r["system"] == "in-process" and r["rows"] == rows)
        ax.axhline(limit, linestyle="--", color="grey", label="in-process signature call")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{rows}-row requests")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("rows / s")
        ax.legend(fontsize=8)
    fig.suptitle(f"Serving throughput, {meta['date']}, {os.cpu_count()} cores (server and load generator share them)")
    fig.tight_layout()
    fig.savefig(HERE / "throughput.png", dpi=90)

    lines = ["# Serving benchmark results", "",
             f"Machine: {meta['machine']}, Python {meta['python']}; shared with other work: load average "
             f"{load_before} before the run, {load_after} after (1/5/15 min). Date: {meta['date']}.",
             f"Command: `{meta['command']}` (`make bench-serving`); {args.seconds:g} s per cell, {args.rounds} rounds "
             "round-robin over every cell of every system, the round with the median req/s reported (all rounds' req/s in the last column). REST load: wrk -t1 "
             f"(C, closed loop, c connections); gRPC load: {next((r['loadgen'] for r in results if r['api'] == 'gRPC'), '')} (C, closed loop, "
             "c connections x 1 stream). Esteira runs with --enable_batching (max_batch_size 256, timeout 0, 2 threads); its REST "
             "and gRPC APIs on the native transports (`esteira`) and, in a second process measured in the same rounds, on the "
             "fallback transports: asyncio for REST (`esteira-asyncio`), grpcio's server for gRPC (`esteira-grpcio`). "
             "Model: the demo model, 30 float features, signature `predict_raw`, JSON row format.",
             "Files: results.csv, results.json, throughput.png.", "",
             "## Against the targets (same run, side by side)", "",
             "| target | reached | baseline (same run) | met |", "|---|---|---|---|"]
    lines += [f"| {t} | {r} | {b} | {'yes' if m else 'NO'} |" for t, r, b, m in checks]
    lines += ["", "## All cells", "",
              "| system | api | rows | conc | req/s | rows/s | p50 ms | p99 ms | failed | load generator | its CPU share | req/s per round |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['system']} | {r['api']} | {r['rows']} | {r['concurrency']} | {r['req_per_s']} | {r['rows_per_s']} | "
              f"{r['p50_ms']} | {r['p99_ms']} | {r['failures']} | {r['loadgen']} | {r['loadgen_cpu_share']:.0%} | "
              f"{' / '.join(f'{x:g}' for x in r.get('rounds_req_per_s', [r['req_per_s']]))} |" for r in results]
    if swap:
        lines += ["", "## Version swaps under load", "", "```", json.dumps(swap, indent=1), "```"]
    analysis = HERE / "analysis.md"
    if analysis.exists():
        lines += ["", analysis.read_text().rstrip()]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
