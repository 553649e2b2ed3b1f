"""Serving benchmark: Flask baseline vs Esteira REST vs Esteira gRPC vs the in-process signature call.

One run, one model (the demo model: 30 float features, the size of the pipeline's), same load
generators for every server: wrk (C, closed loop) for REST and grpc_load.py (grpc.aio, closed loop)
for gRPC. Server and load generator share this machine's cores; the generator's CPU share is recorded.
Writes results.csv, results.json and throughput.png next to this file.

    python benchmarks/serving/bench_serving.py [--seconds 4]
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


def run_grpc(target: str, rows: int, concurrency: int, seconds: float) -> dict:
    before = children_cpu()
    out = subprocess.run([PY, str(HERE / "grpc_load.py"), target, str(rows), str(concurrency), str(seconds)],
                         capture_output=True, text=True, check=True, env=ENV).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["loadgen_cpu_s"] = children_cpu() - before
    return result


def in_process(model_dir: Path, rows: int, seconds: float) -> dict:
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(str(model_dir)).signatures["predict_raw"]
    rng = np.random.default_rng(0)
    inputs = {f"feature_{i}": tf.constant(rng.normal(size=rows).astype(np.float32)) for i in range(30)}
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", default="1,8,32")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    from serving.demo_model import export_demo_model

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    base = work / "demo"
    export_demo_model(base, 1, warmup_records=4)
    export_demo_model(work / "staging", 2, bias=1.0, warmup_records=4)
    batching = work / "batching.config"
    batching.write_text("max_batch_size { value: 256 } batch_timeout_micros { value: 0 } "
                        "num_batch_threads { value: 2 } max_enqueued_batches { value: 1000 }")
    monitoring = work / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }")
    levels = [int(c) for c in args.concurrency.split(",")]
    results: list[dict] = []
    bodies = {1: rows_json(1), 64: rows_json(64)}

    def record(system: str, api: str, rows: int, concurrency: int, r: dict) -> None:
        rps = r["requests"] / r["seconds"]
        row = {"system": system, "api": api, "rows": rows, "concurrency": concurrency, "req_per_s": round(rps, 1),
               "rows_per_s": round(rps * rows, 1), "p50_ms": round(r["p50_ms"], 3), "p99_ms": round(r["p99_ms"], 3),
               "failures": r["failures"], "loadgen_cpu_share": round(r["loadgen_cpu_s"] / (2 * r["seconds"]), 3)}
        results.append(row)
        print(json.dumps(row), flush=True)

    # 1. in-process limit
    for rows in (1, 64):
        record("in-process", "signature call", rows, 1, in_process(base / "1", rows, args.seconds))

    # 2. Flask baseline
    port = free_port()
    flask = subprocess.Popen([PY, str(HERE / "flask_baseline.py"), str(base / "1"), str(port)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        for rows in (1, 64):
            for c in levels:
                record("flask", "REST", rows, c, run_wrk(f"http://127.0.0.1:{port}/v1/models/demo:predict", bodies[rows], c, args.seconds))
    finally:
        flask.terminate()
        flask.wait(10)

    # 3. Esteira REST + gRPC (same server process)
    rest, grpc_port = free_port(), free_port()
    server = subprocess.Popen([PY, "-m", "pipeline.cli", "serve", f"--port={grpc_port}", f"--rest_api_port={rest}",
                               "--host=127.0.0.1", "--model_name=demo", f"--model_base_path={base}",
                               "--enable_batching", f"--batching_parameters_file={batching}",
                               f"--monitoring_config_file={monitoring}", "--log_level=WARNING"],
                              env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    swap: dict = {}
    try:
        wait_http(f"http://127.0.0.1:{rest}/readyz")
        url = f"http://127.0.0.1:{rest}/v1/models/demo:predict"
        for rows in (1, 64):
            for c in levels:
                record("esteira", "REST", rows, c, run_wrk(url, bodies[rows], c, args.seconds))
                record("esteira", "gRPC", rows, c, run_grpc(f"127.0.0.1:{grpc_port}", rows, c, args.seconds))
        # 4. version swap under load: publish version 2 while wrk runs
        script_args = (url, bodies[1], 8, 8.0)
        import threading

        holder: dict = {}
        thread = threading.Thread(target=lambda: holder.update(run_wrk(*script_args)))
        thread.start()
        time.sleep(2.0)
        (work / "staging" / "2").rename(base / "2")
        thread.join()
        import httpx

        status = httpx.get(f"http://127.0.0.1:{rest}/v1/models/demo").json()["model_version_status"]
        metrics = httpx.get(f"http://127.0.0.1:{rest}/monitoring/prometheus/metrics").text
        loads = {m.group(1): float(m.group(2)) for m in
                 re.finditer(r'esteira_model_load_seconds\{model="demo",version="(\d+)"\} ([\d.]+)', metrics)}
        swap = {"requests": holder["requests"], "failures": holder["failures"],
                "states": {s["version"]: s["state"] for s in status}, "load_seconds": loads}
        print(json.dumps({"swap": swap}), flush=True)
    finally:
        server.terminate()
        server.wait(20)
    shutil.rmtree(work, ignore_errors=True)
    write_outputs(results, swap, args)


def write_outputs(results: list[dict], swap: dict, args: argparse.Namespace) -> None:
    import csv

    with open(HERE / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, {platform.platform()}", "python": platform.python_version(),
            "command": "python benchmarks/serving/bench_serving.py " + " ".join(sys.argv[1:]), "seconds_per_cell": args.seconds}
    (HERE / "results.json").write_text(json.dumps({"meta": meta, "results": results, "swap": swap}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, rows in zip(axes, (1, 64)):
        for system, api in (("flask", "REST"), ("esteira", "REST"), ("esteira", "gRPC")):
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


if __name__ == "__main__":
    main()
