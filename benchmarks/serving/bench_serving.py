"""Serving benchmark: Esteira against the engine's ceilings, KServe's ModelServer, Flask and the in-process call.

The ceilings are what no server on our engines can pass: a bare uvicorn ASGI app (asgi_ceiling.py) and a
bare ``grpc.aio`` servicer (grpc_ceiling.py), both answering the same bodies with predictions of the same
shape and no model. One run, one model (the demo model: 30 float features, the size of the pipeline's),
every server up for the whole run and measured in the same interleaved rounds, with the same load
generators: wrk (C, closed loop) sends the same JSON bodies to every REST server; h2load (C, closed loop;
grpc_load.py on grpc.aio where h2load is missing) sends the same PredictRequest to both gRPC servers.
KServe runs from its own virtualenv (kserve_env.py) through a custom ``kserve.Model`` (kserve_server.py)
calling the same signature.
Servers and load generators share this machine's cores; each side's CPU share is recorded.
A second Esteira with ``--ssl_config_file`` (a self-signed certificate, server TLS) answers the 1-row c=8
cells beside it, for what TLS costs. Then versions 2 and 3 are published under REST + gRPC load to count
failed requests across swaps.
Writes results.csv, results.json, throughput.png and RESULTS.md (report.py) into --out.

    python benchmarks/serving/bench_serving.py [--seconds 4 --rounds 3]
    python benchmarks/serving/bench_serving.py --report-only   # re-render RESULTS.md after editing analysis.md
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ROW_COUNTS = (1, 64)
SWAP_WINDOW_S = 15.0


def progress(message: str, since: float) -> None:
    """A progress line on stderr (stdout carries the JSON results), with seconds since the run began."""
    print(f"[{time.monotonic() - since:6.1f} s] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, body: str | None = None, timeout: float = 300) -> None:
    """Until ``url`` answers 200 (a POST of ``body`` if given: Flask has no status route); a server that
    exits first is an error naming it, not a silent hang."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, process.args[:3]))} exited with {process.returncode} "
                               f"before {url} answered")
        try:  # verify=False: the TLS server's certificate is the benchmark's own, self-signed
            answer = (httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=5)
                      if body is not None else httpx.get(url, timeout=1, verify=False))
            if answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


def rows_json(count: int) -> str:
    from serving.demo_model import raw_row

    return json.dumps({"signature_name": "predict_raw", "instances": [raw_row(i) for i in range(count)]})


def write_grpc_frame(path: Path, rows: int) -> Path:
    """The PredictRequest as one length-prefixed gRPC message, the body h2load sends."""
    from grpc_load import build

    message = build(rows)
    path.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
    return path


def write_tls_config(work: Path) -> Path:
    """A self-signed P-256 certificate for 127.0.0.1 (openssl) in TF Serving's SSLConfig text format:
    server TLS without client certificates, what a TLS figure is usually quoted for."""
    from google.protobuf import text_format

    from serving.config import SSLConfigProto

    key, cert = work / "tls.key", work / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    path = work / "ssl.config"
    path.write_text(text_format.MessageToString(SSLConfigProto(server_key=key.read_text(),
                                                               server_cert=cert.read_text())))
    return path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a running process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, body: str, concurrency: int, seconds: float) -> dict:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    before = children_cpu()
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(int(seconds), 1)}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    cpu = children_cpu() - before
    script.unlink()

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    elapsed = re.search(r"requests in ([\d.]+)(ms|s)", out)
    failed = int(re.search(r"Non-2xx or 3xx responses: (\d+)", out).group(1)) if "Non-2xx" in out else 0
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"requests": requests, "failures": failed + errors,
            "seconds": float(elapsed.group(1)) / (1000 if elapsed.group(2) == "ms" else 1),
            "p50_ms": ms("50"), "p99_ms": ms("99"), "loadgen_cpu_s": cpu}


def run_h2load_grpc(target: str, frame: Path, concurrency: int, seconds: float, metrics_url: str | None,
                    tls: bool = False) -> dict:
    """gRPC Predict load from h2load (C, closed loop, one stream per connection like wrk's connections).

    h2load sees HTTP status only; gRPC errors travel in trailers, so failures also count the server's own
    non-OK Predict requests over the cell (nothing else sends Predict to it meanwhile); a server without
    metrics (the bare servicer, ``metrics_url`` None) answers OK or not at all."""
    import numpy as np

    log = Path(tempfile.mkstemp(suffix=".log")[1])
    errors_before = server_errors(metrics_url) if metrics_url else 0
    before = children_cpu()
    scheme = "https" if tls else "http"
    out = subprocess.run(["h2load", "-c", str(concurrency), "-m", "1", "-t", "1", "-D", str(max(int(seconds), 1)),
                          "-d", str(frame), "-H", "content-type: application/grpc", "-H", "te: trailers",
                          "--log-file", str(log), f"{scheme}://{target}/tensorflow.serving.PredictionService/Predict"],
                         capture_output=True, text=True, check=True).stdout
    cpu = children_cpu() - before
    durations, bad_status = [], 0
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            durations.append(int(parts[2]) / 1000)
            bad_status += parts[1] != "200"
    log.unlink()
    failed = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    h2_failed = sum(int(x) for x in failed.groups()) if failed else 0
    lat = np.array(durations or [0.0])
    elapsed = float(re.search(r"finished in ([\d.]+)s", out).group(1)) if "finished in" in out else seconds
    counted = server_errors(metrics_url) - errors_before if metrics_url else 0
    return {"requests": len(durations), "failures": bad_status + h2_failed + counted,
            "seconds": elapsed, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "loadgen_cpu_s": cpu}


def wait_grpc_ready(target: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until a gRPC server at ``target`` accepts a channel; one that exits first is an error naming it."""
    import grpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, process.args[:3]))} exited with {process.returncode} "
                               f"before {target} accepted a channel")
        with grpc.insecure_channel(target) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                return
            except grpc.FutureTimeoutError:
                pass
    raise RuntimeError(f"{target} did not accept a gRPC channel within {timeout:.0f} s")


def run_python_grpc(target: str, rows: int, concurrency: int, seconds: float) -> dict:
    out = subprocess.run([PY, str(HERE / "grpc_load.py"), target, str(rows), str(concurrency), str(seconds)],
                         capture_output=True, text=True, check=True, env=ENV).stdout
    return json.loads(out.strip().splitlines()[-1])  # loadgen_cpu_s: its own CPU after its imports


def _requests_total(metrics_url: str) -> list[tuple[dict[str, str], int]]:
    import httpx

    text = httpx.get(metrics_url, timeout=10, verify=False).text  # the TLS server's certificate is self-signed
    return [(dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))), int(float(m.group(2))))
            for m in re.finditer(r'^esteira_requests_total\{([^}]*)\} ([\d.e+]+)$', text, re.M)]


def server_errors(metrics_url: str) -> int:
    """Non-OK Predict requests the server counted (not the benchmark's own status polls)."""
    return sum(n for labels, n in _requests_total(metrics_url)
               if labels.get("code") != "OK" and labels.get("api") == "predict")


def server_errors_by_code(metrics_url: str) -> dict[str, int]:
    """Non-OK requests by entrypoint, API, version and status code (what failed, not just how many)."""
    out: dict[str, int] = {}
    for labels, n in _requests_total(metrics_url):
        if labels.get("code") != "OK":
            key = f"{labels.get('entrypoint')} {labels.get('api')} v{labels.get('version')} {labels.get('code')}"
            out[key] = out.get(key, 0) + n
    return out


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@functools.cache
def _signature(model_dir: Path):  # type: ignore[no-untyped-def]
    import tensorflow as tf

    return tf.saved_model.load(str(model_dir)).signatures["predict_raw"]


def in_process(model_dir: Path, rows: int, seconds: float) -> dict:
    """The signature called in this process with tensors built beforehand: no parsing, no network."""
    import numpy as np
    import tensorflow as tf

    signature = _signature(model_dir)
    rng = np.random.default_rng(0)
    inputs = {f"feature_{i}": tf.constant(rng.normal(size=rows).astype(np.float32)) for i in range(30)}
    signature(**inputs)
    count, latencies = 0, []
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        signature(**inputs)
        latencies.append(time.perf_counter() - t0)
        count += 1
    elapsed = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {"requests": count, "failures": 0, "seconds": elapsed, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "loadgen_cpu_s": 0.0}


def export_models(work: Path) -> Path:
    """Version 1 under ``work/demo``; versions 2 and 3 staged, to be published during the swap phase."""
    from serving.demo_model import export_demo_model

    base = work / "demo"
    export_demo_model(base, 1, warmup_records=4)
    for version in (2, 3):
        export_demo_model(work / "staging", version, bias=float(version - 1), warmup_records=4)
    return base


def start_esteira(work: Path, base: Path, grpc_port: int, rest_port: int, tree: Path = ROOT,
                  module: str = "cli", extra: tuple[str, ...] = (), env: dict[str, str] | None = None
                  ) -> subprocess.Popen:
    """``esteira serve`` as users run it: one process, REST + gRPC, dynamic batching, Prometheus metrics.
    ``tree`` and ``module`` start another checkout's server (its command module) for a before/after run;
    ``extra`` flags go after these (e.g. ``--server_processes=2``), ``env`` adds to the environment."""
    batching = work / "batching.config"
    batching.write_text("max_batch_size { value: 256 } batch_timeout_micros { value: 0 } "
                        "num_batch_threads { value: 2 } max_enqueued_batches { value: 1000 }")
    monitoring = work / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }")
    return subprocess.Popen([PY, "-m", module, "serve", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
                             "--host=127.0.0.1", "--model_name=demo", f"--model_base_path={base}",
                             "--file_system_poll_wait_seconds=1", "--enable_batching",
                             f"--batching_parameters_file={batching}", f"--monitoring_config_file={monitoring}",
                             "--log_level=WARNING", *extra],
                            env={**ENV, "PYTHONPATH": str(tree), **(env or {})}, cwd=tree, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def start_kserve(python: Path, model_dir: Path, port: int) -> subprocess.Popen:
    """KServe's ModelServer, one uvicorn worker (one process, like Esteira), no per-request log lines (Esteira
    runs at WARNING); its gRPC speaks the open inference protocol, not TF Serving's, so only REST is compared."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.Popen([str(python), str(HERE / "kserve_server.py"), f"--model_dir={model_dir}",
                             f"--http_port={port}", "--model_name=demo", "--workers=1", "--enable_grpc=false",
                             "--enable_latency_logging=false", "--configure_logging=false"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen, grace: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


Cell = tuple[tuple[str, str, int, int, str], Callable[[], dict], "subprocess.Popen | None"]


def measure(cells: list[Cell], rounds: int) -> dict[tuple, list[dict]]:
    """Every cell ``rounds`` times, round-robin over all systems, so a slow minute of the machine hits the
    limit, the baselines and Esteira alike. Adds the server's CPU use (cores) to each run (this process's
    for the in-process call) and the machine's 1-min load average after it."""
    runs: dict[tuple, list[dict]] = {key: [] for key, _, _ in cells}
    started = time.monotonic()
    for round_number in range(rounds):
        progress(f"round {round_number + 1} of {rounds}: {len(cells)} cells", started)
        for key, run, server in cells:
            pid = server.pid if server else os.getpid()  # the in-process call runs here
            cpu_before = process_cpu(pid)
            result = run()
            result["server_cores"] = (process_cpu(pid) - cpu_before) / result["seconds"]
            result["load_1min"] = os.getloadavg()[0]
            runs[key].append(result)
    return runs


def summarize(key: tuple, runs: list[dict]) -> dict:
    """One row per cell: the round with the median req/s (its own p50/p99), every round's req/s beside it,
    failures summed over all rounds."""
    system, api, rows, concurrency, loadgen = key
    rates = [r["requests"] / r["seconds"] for r in runs]
    r = runs[sorted(range(len(runs)), key=rates.__getitem__)[len(runs) // 2]]
    rps = r["requests"] / r["seconds"]
    return {"system": system, "api": api, "rows": rows, "concurrency": concurrency, "req_per_s": round(rps, 1),
            "rows_per_s": round(rps * rows, 1), "p50_ms": round(r["p50_ms"], 3), "p99_ms": round(r["p99_ms"], 3),
            "failures": sum(run["failures"] for run in runs), "loadgen": loadgen,
            "loadgen_cpu_share": round(r["loadgen_cpu_s"] / ((os.cpu_count() or 1) * r["seconds"]), 3),
            "server_cores": round(r["server_cores"], 2), "load_1min": round(r["load_1min"], 2),
            "rounds_req_per_s": [round(x, 1) for x in rates]}


def swap_under_load(work: Path, base: Path, rest_url: str, status_url: str, metrics_url: str,
                    grpc_cell: Callable[[int, int, float], dict], rest_body: str) -> dict:
    """Publish versions 2 and 3 while wrk (REST) and the gRPC generator each run 1-row c=8 requests."""
    import httpx

    holder: dict = {}
    errors_before = server_errors(metrics_url)
    threads = [threading.Thread(target=lambda: holder.update(rest=run_wrk(rest_url, rest_body, 8, SWAP_WINDOW_S))),
               threading.Thread(target=lambda: holder.update(grpc=grpc_cell(1, 8, SWAP_WINDOW_S)))]
    load_started = time.monotonic()
    for thread in threads:
        thread.start()
    to_available = {}
    for version in (2, 3):
        time.sleep(2.0)
        published = time.monotonic()
        (work / "staging" / str(version)).rename(base / str(version))
        while time.monotonic() - published < 30:
            status = httpx.get(f"{status_url}/versions/{version}")
            if status.status_code == 200 and status.json()["model_version_status"][0]["state"] == "AVAILABLE":
                break
            time.sleep(0.01)
        to_available[str(version)] = round(time.monotonic() - published, 3)
    last_available_s = time.monotonic() - load_started
    for thread in threads:
        thread.join()
    states = httpx.get(status_url).json()["model_version_status"]
    metrics = httpx.get(metrics_url).text
    loads = {m.group(1): float(m.group(2)) for m in
             re.finditer(r'esteira_model_load_seconds\{model="demo",version="(\d+)"\} ([\d.]+)', metrics)}
    return {"rest_requests": holder["rest"]["requests"], "rest_failures": holder["rest"]["failures"],
            "grpc_requests": holder["grpc"]["requests"], "grpc_failures": holder["grpc"]["failures"],
            "server_errors": server_errors(metrics_url) - errors_before,
            "server_non_ok_since_start": server_errors_by_code(metrics_url),
            "rest_p99_ms": round(holder["rest"]["p99_ms"], 3), "grpc_p99_ms": round(holder["grpc"]["p99_ms"], 3),
            "states": {s["version"]: s["state"] for s in states}, "load_seconds": loads,
            "publish_to_available_s": to_available, "poll_interval_s": 1, "load_window_s": SWAP_WINDOW_S,
            "last_available_after_s": round(last_available_s, 3),
            "swaps_inside_load_window": last_available_s < SWAP_WINDOW_S}


def main() -> None:
    from report import write_outputs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=4, help="length of one cell in seconds")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated client counts; 1 and 8 carry the "
                        "targets, each more adds 8 cells per round (e.g. 1,8,32)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure every cell this many times, round-robin over all cells; the round with the "
                             "median req/s is reported (this machine's speed drifts)")
    parser.add_argument("--out", type=Path, default=HERE,
                        help="where results and RESULTS.md go (default: beside this file)")
    parser.add_argument("--report-only", action="store_true",
                        help="re-render RESULTS.md from the recorded results.json (e.g. after editing analysis.md); "
                             "measures nothing")
    args = parser.parse_args()
    if args.report_only:
        recorded = json.loads((args.out / "results.json").read_text())
        write_outputs(args.out, recorded["results"], recorded["swap"], recorded["meta"])
        return
    levels = sorted({int(c) for c in args.concurrency.split(",")})
    if not {1, 8} <= set(levels):
        sys.exit(f"--concurrency must include 1 and 8 (the targets are stated there), got {args.concurrency!r}")
    if args.seconds < 1 or args.rounds < 1:
        sys.exit("--seconds and --rounds must be at least 1")
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk (h2load for gRPC: apt-get install -y nghttp2-client)")
    use_h2load = shutil.which("h2load") is not None
    from kserve_env import ensure_kserve_env

    kserve_python, kserve_install = ensure_kserve_env()
    print(json.dumps({"kserve_env": kserve_install}), flush=True)
    load_before = load_average()
    started_run = time.monotonic()
    progress(f"KServe environment {'reused' if kserve_install['reused'] else 'installed'}; exporting the model",
             started_run)
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    servers: list[subprocess.Popen] = []
    results: list[dict] = []
    try:
        base = export_models(work)
        bodies = {rows: rows_json(rows) for rows in ROW_COUNTS}
        frames = {rows: write_grpc_frame(work / f"predict_{rows}.grpc", rows) for rows in ROW_COUNTS}
        # All servers stay up for the whole measuring phase, so every cell is measured in the same rounds.
        flask_port, kserve_port, rest_port, grpc_port = free_port(), free_port(), free_port(), free_port()
        asgi_port, bare_grpc_port, tls_rest_port, tls_grpc_port = free_port(), free_port(), free_port(), free_port()
        progress("starting Esteira, the two ceilings, Flask and KServe", started_run)
        esteira_started = time.monotonic()
        esteira = start_esteira(work, base, grpc_port, rest_port)
        servers.append(esteira)
        esteira_tls = start_esteira(work, base, tls_grpc_port, tls_rest_port,
                                    extra=(f"--ssl_config_file={write_tls_config(work)}",))
        servers.append(esteira_tls)
        flask = subprocess.Popen([PY, str(HERE / "flask_baseline.py"), str(base / "1"), str(flask_port)], env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append(flask)
        kserve = start_kserve(kserve_python, base / "1", kserve_port)
        servers.append(kserve)
        asgi = subprocess.Popen([PY, str(HERE / "asgi_ceiling.py"), str(asgi_port)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append(asgi)
        bare_grpc = subprocess.Popen([PY, str(HERE / "grpc_ceiling.py"), str(bare_grpc_port)], env=ENV,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append(bare_grpc)
        wait_ready(f"http://127.0.0.1:{rest_port}/readyz", esteira)
        esteira_ready_s = time.monotonic() - esteira_started  # while the other two start beside it
        progress(f"Esteira ready in {esteira_ready_s:.1f} s", started_run)
        status_url = f"http://127.0.0.1:{rest_port}/v1/models/demo"
        urls = {name: f"http://127.0.0.1:{port}/v1/models/demo:predict"
                for name, port in (("esteira", rest_port), ("flask", flask_port), ("kserve", kserve_port),
                                   ("asgi-ceiling", asgi_port))}
        wait_ready(f"https://127.0.0.1:{tls_rest_port}/readyz", esteira_tls)
        wait_ready(urls["asgi-ceiling"], asgi, bodies[1])
        wait_grpc_ready(f"127.0.0.1:{bare_grpc_port}", bare_grpc)
        wait_ready(urls["flask"], flask, bodies[1])
        wait_ready(urls["kserve"], kserve, bodies[1])
        progress("all servers answer; measuring", started_run)
        metrics_url = f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics"
        target = f"127.0.0.1:{grpc_port}"
        loadgen = "h2load" if use_h2load else "grpc_load.py"

        def grpc_cell(rows: int, c: int, seconds: float, at: str = target, metrics: str | None = metrics_url) -> dict:
            if use_h2load:
                return run_h2load_grpc(at, frames[rows], c, seconds, metrics)
            return run_python_grpc(at, rows, c, seconds)

        cells: list[Cell] = [(("in-process", "signature call", rows, 1, "none"),
                              lambda rows=rows: in_process(base / "1", rows, args.seconds), None)
                             for rows in ROW_COUNTS]
        for rows in ROW_COUNTS:
            for c in levels:
                for name, server in (("asgi-ceiling", asgi), ("flask", flask), ("kserve", kserve),
                                     ("esteira", esteira)):
                    cells.append(((name, "REST", rows, c, "wrk"),
                                  lambda url=urls[name], rows=rows, c=c: run_wrk(url, bodies[rows], c, args.seconds),
                                  server))
                cells.append((("grpc-ceiling", "gRPC", rows, c, loadgen),
                              lambda rows=rows, c=c: grpc_cell(rows, c, args.seconds, f"127.0.0.1:{bare_grpc_port}",
                                                               None), bare_grpc))
                cells.append((("esteira", "gRPC", rows, c, loadgen),
                              lambda rows=rows, c=c: grpc_cell(rows, c, args.seconds), esteira))
        tls_url = f"https://127.0.0.1:{tls_rest_port}/v1/models/demo:predict"
        cells.append((("esteira-tls", "REST", 1, 8, "wrk"), lambda: run_wrk(tls_url, bodies[1], 8, args.seconds),
                      esteira_tls))
        if use_h2load:  # grpc_load.py speaks plain text only
            tls_metrics = f"https://127.0.0.1:{tls_rest_port}/monitoring/prometheus/metrics"
            cells.append((("esteira-tls", "gRPC", 1, 8, "h2load"),
                          lambda: run_h2load_grpc(f"127.0.0.1:{tls_grpc_port}", frames[1], 8, args.seconds,
                                                  tls_metrics, tls=True), esteira_tls))
        for key, runs in measure(cells, args.rounds).items():
            results.append(summarize(key, runs))
            print(json.dumps(results[-1]), flush=True)
        for other in (flask, kserve, asgi, bare_grpc, esteira_tls):
            stop(other, 10)
        progress("publishing versions 2 and 3 under load", started_run)
        swap = swap_under_load(work, base, urls["esteira"], status_url, metrics_url, grpc_cell, bodies[1])
        swap["process_start_to_ready_s"] = round(esteira_ready_s, 3)  # Flask and KServe were starting too
        print(json.dumps({"swap": swap}), flush=True)
    finally:
        for server in servers:
            stop(server)
        shutil.rmtree(work, ignore_errors=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
            "python": sys.version.split()[0],
            "command": "python benchmarks/serving/bench_serving.py " + " ".join(sys.argv[1:]),
            "cores": os.cpu_count(), "seconds_per_cell": args.seconds, "rounds": args.rounds, "concurrency": levels,
            "load_average_before": load_before, "load_average_after": load_average(),
            "wall_s": round(time.monotonic() - started_run, 1), "kserve_env": kserve_install,
            "grpc_loadgen": loadgen}
    write_outputs(args.out, results, swap, meta)
    progress(f"wrote {args.out / 'RESULTS.md'}", started_run)


def machine() -> str:
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory_gb:.0f} GiB, {platform.platform()}"


if __name__ == "__main__":
    main()
