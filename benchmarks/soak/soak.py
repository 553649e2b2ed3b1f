"""Soak: `esteira serve` (its own process, as users run it) under mixed REST and gRPC load for a long time while
its versions, labels and config change, recording per minute what was answered, what failed and how slowly, the
server's RSS and open file descriptors over time, and its access audit against the requests it answered.

Load: REST Predict (1 and 64 rows), Classify, metadata, feedback on the answered predictions and, when the
server has the ``:explain`` verb, explanations; gRPC Predict (1 and 64 rows), Classify and metadata; requests go
to the newest version, to the ``stable`` label and to the ``canary`` label. Operations: a new version published
every 2 minutes (copied beside the others, renamed into place, as the Pusher does), the labels flipped every 5
(models.config rewritten, polled by the server) and the config reloaded every 7 (gRPC HandleReloadConfigRequest).
Targets: 0 failed requests; RSS and descriptors after the settling minutes within 5 % of where they were then;
as many audit lines as requests answered.

    .venv/bin/python benchmarks/soak/soak.py                 # 30 minutes; results in benchmarks/soak/results/
    .venv/bin/python benchmarks/soak/soak.py --minutes 3     # the short proof that it works
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from observability.stack import wait_until  # noqa: E402
from privacy.audit import verify  # noqa: E402
from serving.demo_model import FEATURES, export_demo_model, raw_row  # noqa: E402
from serving.server import pick_free_port  # noqa: E402

MODEL = "demo"
GROWTH_LIMIT = 0.05


@dataclass
class Minute:
    """What one wall-clock minute of the run saw, by request kind."""

    answered: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


class Recorder:
    """Per-minute counts and latencies from every client thread, plus the requests the driver itself sent."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.minutes: dict[int, Minute] = {}
        self.lock = threading.Lock()
        self.failures: list[str] = []  # the first few failures, for the report
        self.responded = 0  # every answer the server gave (each one audited), clients' and operator's

    def answer(self, count: int = 1) -> None:
        with self.lock:
            self.responded += count

    def note(self, kind: str, ok: bool, seconds: float, detail: str = "") -> None:
        index = int((time.monotonic() - self.started) // 60)
        with self.lock:
            minute = self.minutes.setdefault(index, Minute())
            book = minute.answered if ok else minute.failed
            book[kind] = book.get(kind, 0) + 1
            if ok:
                minute.latencies.append(seconds)
            elif len(self.failures) < 20:
                self.failures.append(f"minute {index} {kind}: {detail}"[:300])


def _rows(count: int, seed: int) -> list[dict[str, float]]:
    return [raw_row(seed + i) for i in range(count)]


def rest_client(url: str, recorder: Recorder, stop: threading.Event, rate: float, explain: bool) -> None:
    """Cycles through the REST kinds at about ``rate`` requests a second."""
    one = {"signature_name": "predict_raw", "instances": _rows(1, 0)}
    many = {"signature_name": "predict_raw", "instances": _rows(64, 100)}
    examples = {"signature_name": "classify", "examples": [dict.fromkeys(FEATURES, 0.5)]}
    kinds: list[tuple[str, str, str, Any]] = [
        ("rest_predict_1", "POST", f"/v1/models/{MODEL}:predict", one),
        ("rest_predict_64_stable", "POST", f"/v1/models/{MODEL}/labels/stable:predict", many),
        ("rest_classify_canary", "POST", f"/v1/models/{MODEL}/labels/canary:classify", examples),
        ("rest_metadata", "GET", f"/v1/models/{MODEL}/metadata", None),
    ]
    if explain:
        kinds.append(("rest_explain", "POST", f"/v1/models/{MODEL}:explain", one))
    with httpx.Client(base_url=url, timeout=30) as client:
        turn = 0
        while not stop.is_set():
            kind, method, path, body = kinds[turn % len(kinds)]
            turn += 1
            rid = uuid.uuid4().hex
            started = time.perf_counter()
            try:
                response = client.request(method, path, json=body, headers={"x-request-id": rid})
            except httpx.HTTPError as error:
                recorder.note(kind, False, 0.0, f"{type(error).__name__}: {error}")
                continue
            recorder.answer()
            recorder.note(kind, response.status_code == 200, time.perf_counter() - started,
                          f"{response.status_code} {response.text[:200]}")
            if kind == "rest_predict_1" and response.status_code == 200:
                started = time.perf_counter()
                feedback = client.post(f"/v1/models/{MODEL}/feedback",
                                       json={"feedback": [{"request_id": rid, "row": 0, "label": turn % 2}]})
                recorder.answer()
                recorder.note("rest_feedback", feedback.status_code == 200, time.perf_counter() - started,
                              f"{feedback.status_code} {feedback.text[:200]}")
            time.sleep(max(0.0, 1.0 / rate - (time.perf_counter() - started)))


def grpc_client(target: str, recorder: Recorder, stop: threading.Event, rate: float) -> None:
    """Cycles through the gRPC kinds at about ``rate`` requests a second."""
    import grpc
    import numpy as np
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    from serving.protocol.tensors import to_proto

    def predict(rows: int, label: str | None) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.model_spec.signature_name = "predict_raw"
        if label:
            request.model_spec.version_label = label
        for name in FEATURES:
            request.inputs[name].CopyFrom(to_proto(np.array([row[name] for row in _rows(rows, 7)], np.float32)))
        return request

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = MODEL
    classify.model_spec.signature_name = "classify"
    example = classify.input.example_list.examples.add()
    for name in FEATURES:
        example.features.feature[name].float_list.value.append(0.5)
    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = MODEL
    metadata.metadata_field.append("signature_def")
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        kinds = [("grpc_predict_1", stub.Predict, predict(1, None)),
                 ("grpc_predict_64_canary", stub.Predict, predict(64, "canary")),
                 ("grpc_classify_stable", stub.Classify, _labelled(classify, "stable")),
                 ("grpc_metadata", stub.GetModelMetadata, metadata)]
        turn = 0
        while not stop.is_set():
            kind, method, request = kinds[turn % len(kinds)]
            turn += 1
            started = time.perf_counter()
            try:
                method(request, timeout=30, metadata=(("x-request-id", uuid.uuid4().hex),))
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    recorder.answer()
                recorder.note(kind, False, 0.0, f"{error.code().name}: {error.details()}")
                continue
            recorder.answer()
            recorder.note(kind, True, time.perf_counter() - started)
            time.sleep(max(0.0, 1.0 / rate - (time.perf_counter() - started)))


def _labelled(request: Any, label: str) -> Any:
    copy = type(request)()
    copy.CopyFrom(request)
    copy.model_spec.version_label = label
    return copy


def write_config(path: Path, base: Path, stable: int, canary: int) -> None:
    """The served config: the two newest versions, with the labels (written whole, then renamed)."""
    text = (f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}" model_platform: "tensorflow" '
            f"model_version_policy {{ latest {{ num_versions: 2 }} }} "
            f'version_labels {{ key: "stable" value: {stable} }} version_labels {{ key: "canary" value: {canary} }} '
            "} }\n")
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


class Server:
    def __init__(self, work: Path, config: Path, audit: Path) -> None:
        self.grpc_port, self.rest_port = pick_free_port(), pick_free_port()
        monitoring = work / "monitoring.config"
        monitoring.write_text('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n')
        self.argv = [str(Path(sys.executable).with_name("esteira")), "serve", f"--port={self.grpc_port}",
                     f"--rest_api_port={self.rest_port}", "--host=127.0.0.1", f"--model_config_file={config}",
                     "--model_config_file_poll_wait_seconds=1", "--file_system_poll_wait_seconds=1",
                     f"--monitoring_config_file={monitoring}", f"--audit_log_file={audit}"]
        self.log = open(work / "server.log", "w")  # noqa: SIM115 - the server's life
        self.process = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def wait_ready(self, timeout: float = 180) -> None:
        wait_until(lambda: httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200, timeout, "esteira serve",
                   self.process, Path(self.log.name))

    def sample(self) -> tuple[float, int]:
        """RSS in MiB and open file descriptors, from /proc."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return rss_kib / 1024, len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class Operator:
    """Publishes versions, flips labels and reloads the config on schedule, as an operator's automation would."""

    def __init__(self, server: Server, base: Path, sources: list[Path], config: Path, recorder: Recorder) -> None:
        self.server, self.base, self.sources, self.config = server, base, sources, config
        self.recorder = recorder
        self.newest = 2
        self.stable, self.canary = 1, 2
        self.events: list[dict[str, Any]] = []

    def _status(self, version: int) -> str:
        self.recorder.answer()  # the status request is audited too
        body = httpx.get(f"{self.server.url}/v1/models/{MODEL}/versions/{version}", timeout=10).json()
        return body.get("model_version_status", [{}])[0].get("state", "")

    def _labels_applied(self) -> bool:
        for label, version in (("stable", self.stable), ("canary", self.canary)):
            meta = httpx.get(f"{self.server.url}/v1/models/{MODEL}/labels/{label}/metadata", timeout=10)
            self.recorder.answer()
            if meta.status_code != 200 or meta.json()["model_spec"]["version"] != str(version):
                return False
        return True

    def _set_labels(self, stable: int, canary: int) -> None:
        self.stable, self.canary = stable, canary
        write_config(self.config, self.base, stable, canary)
        _wait(self._labels_applied, "the label change to apply")

    def publish(self, elapsed: float) -> None:
        """Both labels onto the newest version first (the oldest is unloaded once the new one serves), then the
        new version copied in and renamed into place, then the canary label onto it."""
        self._set_labels(self.newest, self.newest)
        version = self.newest + 1
        source = self.sources[version % len(self.sources)]
        staging = self.base / f".{version}.partial"
        shutil.copytree(source, staging)
        os.rename(staging, self.base / str(version))
        _wait(lambda: self._status(version) == "AVAILABLE", f"version {version} to load")
        self.newest = version
        self._set_labels(version - 1, version)
        self.events.append({"minute": round(elapsed / 60, 2), "event": f"published version {version}"})

    def flip(self, elapsed: float) -> None:
        self._set_labels(self.canary, self.stable)
        self.events.append({"minute": round(elapsed / 60, 2),
                            "event": f"labels flipped: stable={self.stable} canary={self.canary}"})

    def reload(self, elapsed: float) -> None:
        from serving.client import GrpcClient
        from serving.config import read_model_config

        with GrpcClient(f"127.0.0.1:{self.server.grpc_port}", retries=0) as client:
            self.recorder.answer()
            client.reload(read_model_config(self.config))
        self.events.append({"minute": round(elapsed / 60, 2), "event": "config reloaded (HandleReloadConfigRequest)"})


def _wait(check: Any, what: str) -> None:
    wait_until(check, 120, what)


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def summarize(recorder: Recorder, samples: list[dict[str, float]], settle_minutes: float,
              audit_lines: int, responded: int) -> dict[str, Any]:
    per_minute = []
    for index in sorted(recorder.minutes):
        minute = recorder.minutes[index]
        p99 = _p99(minute.latencies)
        per_minute.append({"minute": index, "answered": sum(minute.answered.values()),
                           "failed": sum(minute.failed.values()), "failed_by_kind": minute.failed,
                           "answered_by_kind": minute.answered, "p99_ms": round(p99 * 1000, 2) if p99 else None})
    settled = [s for s in samples if s["t"] >= settle_minutes * 60]
    growth = {}
    if settled:
        for key in ("rss_mib", "fds"):
            first, peak = settled[0][key], max(s[key] for s in settled)
            growth[key] = {"at_settle": first, "peak_after": peak, "growth": round(peak / first - 1, 4)}
    return {"per_minute": per_minute, "growth_after_settle": growth,
            "answered": sum(m["answered"] for m in per_minute), "failed": sum(m["failed"] for m in per_minute),
            "audit_lines": audit_lines, "requests_the_server_answered": responded}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [m["minute"] + 1 for m in result["summary"]["per_minute"]]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7))
    axes[0][0].bar(minutes, [m["answered"] for m in result["summary"]["per_minute"]], label="answered")
    axes[0][0].bar(minutes, [m["failed"] for m in result["summary"]["per_minute"]], color="red", label="failed")
    axes[0][0].set_title("requests per minute")
    axes[0][0].legend()
    axes[0][1].plot(minutes, [m["p99_ms"] or 0 for m in result["summary"]["per_minute"]], marker="o")
    axes[0][1].set_title("p99 latency per minute (ms)")
    times = [s["t"] / 60 for s in result["samples"]]
    axes[1][0].plot(times, [s["rss_mib"] for s in result["samples"]])
    axes[1][0].set_title("server RSS (MiB)")
    axes[1][1].plot(times, [s["fds"] for s in result["samples"]])
    axes[1][1].set_title("server open file descriptors")
    for event in result["events"]:
        for ax in (axes[1][0], axes[1][1]):
            ax.axvline(event["minute"], color="grey", alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("minute")
    fig.suptitle(f"esteira serve soak, {result['minutes']} min ({result['date']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--publish-every", type=float, default=120.0, help="seconds between new versions")
    parser.add_argument("--flip-every", type=float, default=300.0, help="seconds between label flips")
    parser.add_argument("--reload-every", type=float, default=420.0, help="seconds between config reloads")
    parser.add_argument("--settle-minutes", type=float, default=None,
                        help="growth is measured after this (default 5, or a third of a shorter run)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests a second per client thread")
    parser.add_argument("--clients", type=int, default=2, help="client threads per protocol")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--ready-timeout", type=float, default=600.0,
                        help="seconds the server may take to start (TensorFlow's import is slow on a busy machine)")
    args = parser.parse_args(argv)
    settle = args.settle_minutes if args.settle_minutes is not None else min(5.0, args.minutes / 3)

    work = Path(tempfile.mkdtemp(prefix="esteira-soak-"))
    base = work / "models" / MODEL
    sources = [export_demo_model(work / "sources", 1), export_demo_model(work / "sources", 2, bias=1.0)]
    for number in (1, 2):
        shutil.copytree(sources[number % 2], base / str(number))
    config, audit = work / "models.config", work / "audit" / "access.log"
    write_config(config, base, 1, 2)
    server = Server(work, config, audit)
    server.wait_ready(args.ready_timeout)
    probe = httpx.post(f"{server.url}/v1/models/{MODEL}:explain",
                       json={"signature_name": "predict_raw", "instances": _rows(1, 0)}, timeout=30)
    explain = probe.status_code == 200
    started = time.monotonic()
    recorder = Recorder(started)
    recorder.answer()  # the probe
    operator = Operator(server, base, sources, config, recorder)
    stop = threading.Event()
    threads = [threading.Thread(target=rest_client, args=(server.url, recorder, stop, args.rate, explain),
                                daemon=True) for _ in range(args.clients)]
    threads += [threading.Thread(target=grpc_client, args=(f"127.0.0.1:{server.grpc_port}", recorder, stop,
                                                            args.rate), daemon=True)
                for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    samples: list[dict[str, float]] = []
    schedule = {"publish": args.publish_every, "flip": args.flip_every, "reload": args.reload_every}
    due = dict(schedule)
    end = started + args.minutes * 60
    next_sample = started
    try:
        while time.monotonic() < end:
            now = time.monotonic() - started
            if time.monotonic() >= next_sample:
                rss, fds = server.sample()
                samples.append({"t": round(now, 1), "rss_mib": round(rss, 1), "fds": fds})
                next_sample += 5
            for action, every in schedule.items():
                if now >= due[action]:
                    getattr(operator, action)(now)
                    due[action] += every
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        server.stop()
    audited = verify(audit).records
    answered = sum(sum(m.answered.values()) + sum(m.failed.values()) for m in recorder.minutes.values())
    result = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, load average at start "
                   f"{os.getloadavg()[0]:.1f}",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "minutes": args.minutes, "settle_minutes": settle, "schedule_seconds": schedule, "rate_per_client": args.rate,
        "clients_per_protocol": args.clients, "explain": explain, "events": operator.events,
        "samples": samples, "first_failures": recorder.failures,
        "summary": summarize(recorder, samples, settle, audited, recorder.responded),
        "client_requests_with_an_answer": answered,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"soak-{args.minutes:g}min"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out / f"{stem}.png")
    summary = result["summary"]
    print(json.dumps({k: summary[k] for k in ("answered", "failed", "audit_lines", "requests_the_server_answered",
                                              "growth_after_settle")}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    growth_ok = all(item["growth"] <= GROWTH_LIMIT for item in summary["growth_after_settle"].values())
    return 0 if summary["failed"] == 0 and growth_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
