"""First-request latency of a newly published version, with and without the Pusher's warm-up records.

One ``esteira serve`` process (REST, latest-version policy, polling the base path every second). Each round
publishes two new versions of the demo model, one with ``assets.extra/tf_serving_warmup_requests`` written
by the Pusher's writer (components/serving_pusher/warmup.py, from 8 eval rows) and one without, in
alternating order; as soon as a version reports AVAILABLE, the first Predict (``predict_raw``) and the first
Classify pinned to it are timed, then the same requests again (the steady state). Records the median and
every round, the version's load time (``esteira_model_load_seconds``, which includes the warm-up), the
machine, the date, the load average and the command into warmup_results.json and WARMUP_RESULTS.md.

    python benchmarks/serving/warmup_first_request.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
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

import httpx  # noqa: E402

from components.serving_pusher.warmup import warmup_logs, write_warmup_file  # noqa: E402
from serving.demo_model import export_demo_model, make_examples, raw_row  # noqa: E402
from serving.server import pick_free_port  # noqa: E402

MODEL = "demo"


def publish(source: Path, target: Path, logs: list | None) -> None:
    """Copy the SavedModel as a new version, saved_model.pb last (as the Pusher does), with or without records."""
    shutil.copytree(source, target, ignore=lambda folder, names: ["saved_model.pb"] if Path(folder) == source else [])
    if logs:
        write_warmup_file(target, logs)
    shutil.copy2(source / "saved_model.pb", target / "saved_model.pb")


def wait_available(client: httpx.Client, version: int, timeout: float = 60.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        response = client.get(f"/v1/models/{MODEL}/versions/{version}")
        if response.status_code == 200 and response.json()["model_version_status"][0]["state"] == "AVAILABLE":
            return time.perf_counter() - started
        time.sleep(0.002)
    raise TimeoutError(f"version {version} not AVAILABLE after {timeout} s")


def timed(client: httpx.Client, path: str, body: dict) -> float:
    started = time.perf_counter()
    response = client.post(path, json=body)
    elapsed = (time.perf_counter() - started) * 1000.0
    response.raise_for_status()
    return elapsed


def load_seconds(client: httpx.Client, version: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/monitoring/prometheus/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "esteira_model_load_seconds" and sample.labels.get("version") == str(version):
                return float(sample.value)
    return float("nan")


def measure(client: httpx.Client, version: int) -> dict[str, float]:
    base = f"/v1/models/{MODEL}/versions/{version}"
    predict = {"signature_name": "predict_raw", "instances": [raw_row(version)]}
    classify = {"signature_name": "classify", "examples": [raw_row(version + 1)]}
    result = {"first_predict_ms": timed(client, base + ":predict", predict),
              "first_classify_ms": timed(client, base + ":classify", classify)}
    result["second_predict_ms"] = timed(client, base + ":predict", predict)
    result["second_classify_ms"] = timed(client, base + ":classify", classify)
    result["load_seconds"] = load_seconds(client, version)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    command = "python benchmarks/serving/warmup_first_request.py " + " ".join(sys.argv[1:])
    load_before = os.getloadavg()
    started_at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="warmup-bench-"))
    source = export_demo_model(work / "export", 1, reference_stats=False)
    logs = warmup_logs(source, make_examples(8, seed=5), MODEL)
    base = work / "models" / MODEL
    publish(source, base / "1", logs)
    monitoring = work / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n')
    port = pick_free_port()
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "esteira"), "serve", f"--rest_api_port={port}", f"--port={pick_free_port()}",
         "--host=127.0.0.1", f"--monitoring_config_file={monitoring}", f"--model_name={MODEL}",
         f"--model_base_path={base}",
         "--file_system_poll_wait_seconds=1", "--log_level=WARNING"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: list[dict] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(600):
                try:
                    if client.get(f"/v1/models/{MODEL}").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            wait_available(client, 1)
            version = 1
            for round_index in range(args.rounds):
                order = (True, False) if round_index % 2 == 0 else (False, True)
                for with_records in order:
                    version += 1
                    publish(source, base / str(version), logs if with_records else None)
                    available_after = wait_available(client, version)
                    row = {"round": round_index + 1, "version": version,
                           "warmup_records": len(logs) if with_records else 0,
                           "publish_to_available_s": round(available_after, 3), **measure(client, version)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    time.sleep(1.0)  # the old version's unload and the background preparation settle
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    report(args.out, rows, command, started_at, load_before, len(logs))


def report(out: Path, rows: list[dict], command: str, started_at: str, load_before: tuple, records: int) -> None:
    load_after = os.getloadavg()
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
               f"Python {platform.python_version()}")
    keys = ("first_predict_ms", "first_classify_ms", "second_predict_ms", "second_classify_ms", "load_seconds",
            "publish_to_available_s")
    summary = {}
    for label, flag in (("with warm-up records", True), ("without", False)):
        chosen = [row for row in rows if bool(row["warmup_records"]) == flag]
        summary[label] = {key: round(statistics.median(row[key] for row in chosen), 3) for key in keys}
    document = {"date": started_at, "machine": machine, "command": command, "load_average_before": load_before,
                "load_average_after": load_after, "warmup_records_per_version": records, "median": summary,
                "rounds": rows}
    (out / "warmup_results.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        "# First request of a new version, with and without warm-up records",
        "",
        f"Machine: {machine}. Date: {started_at}. Command: `{command}`. Load average (1/5/15 min) "
        f"{' '.join(f'{v:.2f}' for v in load_before)} before, {' '.join(f'{v:.2f}' for v in load_after)} after.",
        f"One `esteira serve` (REST, latest version only, polling every second), the demo model (30 float "
        f"features); each "
        f"round publishes one version with the Pusher's {records} warm-up records (4 signatures x batch 1 and 8, "
        f"from 8 eval rows) and one without, in alternating order; requests pinned to the new version as soon as it "
        f"is AVAILABLE. Medians of {len(rows) // 2} versions each (every version in warmup_results.json).",
        "",
        "| | first Predict ms | first Classify ms | second Predict ms | second Classify ms | load s (incl. warm-up) "
        "| publish → AVAILABLE s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, values in summary.items():
        lines.append(f"| {label} | " + " | ".join(f"{values[key]}" for key in keys) + " |")
    lines += ["", "| round | version | records | first Predict ms | first Classify ms | second Predict ms | "
              "second Classify ms | load s |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['round']} | {row['version']} | {row['warmup_records']} | {row['first_predict_ms']:.2f} | "
                     f"{row['first_classify_ms']:.2f} | {row['second_predict_ms']:.2f} | "
                     f"{row['second_classify_ms']:.2f} | {row['load_seconds']:.3f} |")
    (out / "WARMUP_RESULTS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
