"""What the fault tests share: a model server as its own process (so it can be SIGKILLed), a tiny tmpfs that
fills up, and load that remembers which requests were answered."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from observability.stack import wait_until
from serving.demo_model import raw_row
from serving.server import pick_free_port

ESTEIRA = str(Path(sys.executable).parent / "esteira")
MODEL = "demo"


@contextmanager
def small_disk(folder: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` for the test's life: writes beyond it fail with ENOSPC."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the full-disk faults mount a {size} tmpfs on {folder} and could not "
                           f"({done.stderr.strip()}); run this suite as root (or with CAP_SYS_ADMIN)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path, leave_bytes: int = 0) -> Path:
    """Fill ``disk`` until at most ``leave_bytes`` are free; the filler file is returned to be removed later."""
    filler = disk / "filler"
    with open(filler, "ab") as handle:
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        try:
            handle.write(b"\0" * max(free - leave_bytes, 0))
            handle.flush()
        except OSError:
            pass  # full: that was the point
    return filler


class ServerProcess:
    """``esteira serve`` as a child process on free loopback ports; start, kill with a signal, start again."""

    def __init__(self, log_path: Path, *flags: str) -> None:
        self.flags = flags
        self.log_path = log_path
        self.grpc_port, self.rest_port = pick_free_port(), pick_free_port()
        while self.rest_port == self.grpc_port:
            self.rest_port = pick_free_port()
        self.process: subprocess.Popen | None = None

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 120.0) -> None:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [ESTEIRA, "serve", f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}",
                 "--host=127.0.0.1", *self.flags], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        wait_until(lambda: httpx.get(f"{self.rest_url}/readyz", timeout=2).status_code == 200, timeout,
                   "esteira serve", self.process, self.log_path)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


PREDICT_BODY = {"signature_name": "predict_raw", "instances": [raw_row(1)]}


@dataclass
class Answered:
    """Request ids the server answered OK, and what failed (by kind), across the load's threads."""

    ok: list[str] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)
    versions: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note_failure(self, kind: str) -> None:
        with self.lock:
            self.failed[kind] = self.failed.get(kind, 0) + 1


def rest_load(url: str, answered: Answered, stop: threading.Event, limit: int) -> None:
    """REST Predict requests, each with its own x-request-id, until ``stop`` or ``limit`` requests."""
    with httpx.Client(timeout=10) as client:
        for _ in range(limit):
            if stop.is_set():
                return
            rid = f"rest-{uuid.uuid4().hex}"
            try:
                response = client.post(f"{url}/v1/models/{MODEL}:predict", json=PREDICT_BODY,
                                       headers={"x-request-id": rid})
            except httpx.HTTPError:
                answered.note_failure("rest-connection")
                continue
            if response.status_code == 200:
                with answered.lock:
                    answered.ok.append(rid)
            else:
                answered.note_failure(f"rest-{response.status_code}")


def grpc_load(target: str, answered: Answered, stop: threading.Event, limit: int) -> None:
    """gRPC Predict requests (raw features), each with its own x-request-id metadata."""
    import grpc
    import numpy as np
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving.protocol.tensors import to_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "predict_raw"
    for name, value in raw_row(1).items():
        request.inputs[name].CopyFrom(to_proto(np.array([value], np.float32)))
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(limit):
            if stop.is_set():
                return
            rid = f"grpc-{uuid.uuid4().hex}"
            try:
                response = stub.Predict(request, timeout=10, metadata=(("x-request-id", rid),))
            except grpc.RpcError as error:
                answered.note_failure(f"grpc-{error.code().name}")
                continue
            with answered.lock:
                answered.ok.append(rid)
                answered.versions.add(response.model_spec.version.value)


class MlflowServer:
    """``mlflow server`` (one worker, sqlite store, proxied artifacts) on a fixed loopback port, so a restart
    finds the same store at the same URI."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = pick_free_port()
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> None:
        quiet = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
                 "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.state / "server.log", "a") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
                 f"sqlite:///{self.state / 'mlflow.db'}", "--artifacts-destination", str(self.state / "artifacts"),
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                env={**os.environ, **quiet}, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        wait_until(lambda: httpx.get(f"{self.uri}/health", timeout=2).status_code == 200, timeout, "mlflow server",
                   self.process, self.state / "server.log")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (uvicorn's worker is a child) and wait for the leader."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
