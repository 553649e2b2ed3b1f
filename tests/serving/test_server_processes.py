"""``esteira serve --server_processes=2``: two workers behind one REST and one gRPC port, metrics summed over
both, a killed worker started again, SIGTERM stopping all, a killed parent leaving no worker; bad values
refused before any worker starts."""
from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serving_helpers import MODEL, metric_samples

from observability.stack import wait_until
from serving.demo_model import raw_row
from serving.flags import FlagError, parse_flags
from serving.server import pick_free_port

METRICS = "/monitoring/prometheus/metrics"
BODY = {"signature_name": "predict_raw", "instances": [raw_row(1)]}
ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _predictions_per_pid(directory: Path) -> dict[int, float]:
    """Predict calls each worker counted, from its own samples file (prometheus_client's mmap format)."""
    from prometheus_client.mmap_dict import MmapedDict

    found: dict[int, float] = {}
    for path in glob.glob(str(directory / "counter_*.db")):
        pid = int(Path(path).stem.split("_")[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(path):
            _family, _kind, _help, sample, labels = json.loads(key)
            if sample == "esteira_requests_total" and ["api", "predict"] in labels:
                found[pid] = found.get(pid, 0.0) + value
    return found


def _summed_predictions(rest_url: str) -> float:
    text = httpx.get(rest_url + METRICS, timeout=5).text
    return sum(value for labels, value in metric_samples(text, "esteira_requests_total")
               if labels["api"] == "predict")


@pytest.mark.parametrize(("flag", "problem"), [
    ("--server_processes=0", "at least 1"), ("--server_processes=-2", "at least 1"),
    ("--server_processes=two", "needs a number"),
])
def test_bad_process_counts_are_refused(flag: str, problem: str) -> None:
    with pytest.raises(FlagError, match=problem):
        parse_flags(["--model_base_path=/m", flag])


def test_a_unix_socket_and_a_taken_port_are_refused_before_any_worker_starts(tmp_path: Path) -> None:
    with pytest.raises(FlagError, match="--grpc_socket_path cannot be shared"):
        parse_flags(["--model_base_path=/m", "--server_processes=2", f"--grpc_socket_path={tmp_path}/s"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "cli", "serve", f"--model_base_path={tmp_path}",
                               "--host=127.0.0.1", f"--rest_api_port={port}", f"--port={pick_free_port()}",
                               "--server_processes=2"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot bind --rest_api_port={port}" in done.stderr and "worker 0 started" not in done.stderr


def test_the_audit_chains_of_the_workers_are_verified_as_one_log(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from cli.audit import audit_main
    from privacy.access import summarize_access
    from privacy.audit import AuditLog

    audit = tmp_path / "audit.jsonl"
    for worker in (0, 1):
        with AuditLog(f"{audit}.w{worker}") as chain:
            chain.append({"model": MODEL, "version": 1, "caller": f"c{worker}"})
    assert audit_main(["verify", str(audit)]) == 0
    assert capsys.readouterr().out.count("ok: 1 records") == 2
    summary = summarize_access([audit], MODEL, "1")
    assert summary.verified and len(summary.logs) == 2

    lines = (tmp_path / "audit.jsonl.w1").read_text().replace('"c1"', '"c9"')
    (tmp_path / "audit.jsonl.w1").write_text(lines)  # one worker's chain edited
    assert audit_main(["verify", str(audit)]) == 1
    assert "audit.jsonl.w1" in capsys.readouterr().err
    assert not summarize_access([audit], MODEL, "1").verified


def test_workers_are_stopped_when_their_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", (
        "import os, subprocess, sys, time; from serving.workers import tied_to\n"
        "child = subprocess.Popen([sys.executable, '-c', 'from serving.workers import tie_to_parent; "
        "tie_to_parent(); import time; time.sleep(60)'], env={**os.environ, **tied_to(os.getpid())})\n"
        "print(child.pid, flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    child = int(parent.stdout.readline())  # type: ignore[union-attr]
    assert _alive(child)
    parent.kill()
    parent.wait()
    wait_until(lambda: not _alive(child), 10, "the worker of a SIGKILLed parent to stop")


def test_two_workers_share_the_ports_sum_their_metrics_restart_and_stop(model_store: Path, tmp_path: Path) -> None:
    from serving.client import GrpcClient

    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true, path: "{METRICS}" }}\n')
    grpc_port, rest_port = pick_free_port(), pick_free_port()
    while rest_port == grpc_port:
        rest_port = pick_free_port()
    metrics_dir, log_path, audit = tmp_path / "metrics", tmp_path / "serve.log", tmp_path / "audit.jsonl"
    rest_url = f"http://127.0.0.1:{rest_port}"
    with open(log_path, "w") as log:
        parent = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", f"--model_name={MODEL}", f"--model_base_path={model_store / MODEL}",
             "--host=127.0.0.1", f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--server_processes=2",
             f"--monitoring_config_file={monitoring}", f"--audit_log_file={audit}",
             "--file_system_poll_wait_seconds=0"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    try:
        wait_until(lambda: "all 2 workers ready" in log_path.read_text(), 150, "two workers", parent, log_path)
        workers = _children(parent.pid)
        assert len(workers) == 2

        for _ in range(16):  # a new connection each: the kernel spreads them over both workers
            assert httpx.post(f"{rest_url}/v1/models/{MODEL}:predict", json=BODY, timeout=10).status_code == 200
        for _ in range(4):
            with GrpcClient(f"127.0.0.1:{grpc_port}") as client:
                client.predict_body(MODEL, BODY, signature="predict_raw")
        wait_until(lambda: _summed_predictions(rest_url) == 20, 10, "the sum of both workers' predictions")
        per_pid = _predictions_per_pid(metrics_dir)
        assert set(per_pid) == workers and all(count > 0 for count in per_pid.values()), per_pid
        text = httpx.get(rest_url + METRICS).text
        assert ':tensorflow:serving:request_latency_bucket{API="predict",entrypoint="REST",le="18",' in text

        unknown = httpx.post(f"{rest_url}/v1/models/{MODEL}/feedback",
                             json={"feedback": [{"request_id": "never-seen", "label": 1}]}).json()["results"][0]
        assert unknown["status"] == "unknown" and "worker" in unknown["message"]  # says why, not just "unknown"

        verified = subprocess.run([sys.executable, "-m", "cli", "audit", "verify", str(audit)],
                                  capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr
        chains = verified.stdout.splitlines()  # one per worker: 20 predictions, 4 gRPC metadata calls, 1 feedback
        assert len(chains) == 2 and sum(int(line.split("ok: ")[1].split()[0]) for line in chains) == 25

        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: "ready again" in log_path.read_text(), 120, "the killed worker's successor", parent,
                   log_path)
        workers = _children(parent.pid)
        assert killed not in workers and len(workers) == 2
        assert _summed_predictions(rest_url) == 20  # what the dead worker answered still counts
    finally:
        parent.send_signal(signal.SIGTERM)
        code = parent.wait(60)
    assert code == 0, log_path.read_text()[-3000:]
    assert not any(_alive(pid) for pid in workers)
    assert not glob.glob(str(metrics_dir / "gauge_*.db"))  # the gauges of stopped workers left the sums
