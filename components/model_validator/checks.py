"""What must hold before a model is published, checked without TFX: every exported variable is
finite, the model server loads the SavedModel and answers Predict through its real code path within a
latency budget, and every signature gives the same probabilities on the same rows."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

SERVED_NAME = "candidate"
SERVED_VERSION = 1
EXAMPLES_INPUT = "examples"

if TYPE_CHECKING:
    from tensorflow.core.example import example_pb2


@dataclass(frozen=True)
class ValidationSettings:
    latency_budget_ms: float
    startup_timeout_s: float = 120.0
    signature_tolerance: float = 1e-4
    prediction_key: str = "probability"


@dataclass
class ValidationResult:
    """The verdict and the evidence: ``reasons`` says why not blessed, ``values`` what was measured."""

    reasons: list[str] = field(default_factory=list)
    values: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def blessed(self) -> bool:
        return not self.reasons


def non_finite_variables(saved_model_dir: Path) -> list[str]:
    """Names of exported floating-point variables holding a NaN or an infinity."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(str(Path(saved_model_dir) / "variables" / "variables"))
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    names = {attribute.checkpoint_key: attribute.full_name or attribute.checkpoint_key
             for node in graph.nodes for attribute in node.attributes}
    bad = []
    for key, dtype in sorted(reader.get_variable_to_dtype_map().items()):
        if not dtype.is_floating:
            continue
        if not np.all(np.isfinite(reader.get_tensor(key))):
            bad.append(names.get(key, key.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE")))
    return sorted(set(bad))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class RunningServer:
    grpc_target: str
    rest_url: str
    pid: int


@contextmanager
def model_server(saved_model_dir: Path, startup_timeout_s: float) -> Iterator[RunningServer]:
    """``esteira serve`` in its own process over the candidate as version 1 of a temporary base path,
    on free loopback ports; stopped by its pid. Raises RuntimeError if it does not load in time."""
    from serving.client import RestClient, ServingClientError
    from serving.workers import tied_to

    base = Path(tempfile.mkdtemp(prefix="esteira-model-validation-"))
    (base / str(SERVED_VERSION)).symlink_to(Path(saved_model_dir).resolve(), target_is_directory=True)
    grpc_port, rest_port = free_port(), free_port()
    log = (base / "server.log").open("w+")
    # tied to this run: a SIGKILLed run leaves no server behind
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", **tied_to(os.getpid()))
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
         f"--model_name={SERVED_NAME}", f"--model_base_path={base}", "--host=127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    target = f"127.0.0.1:{grpc_port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        # Polled over REST: a gRPC channel refused while the server starts backs off for many seconds.
        with RestClient(f"http://127.0.0.1:{rest_port}", timeout=5.0, retries=0) as client:
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"the model server exited with code {process.returncode} before "
                                       f"loading the model: {log.read()[-2000:].strip()}")
                try:
                    states = [v.get("state") for v in client.status(SERVED_NAME).get("model_version_status", [])]
                    if "AVAILABLE" in states:
                        break
                except ServingClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the model server did not load the model within {startup_timeout_s:g} s")
                time.sleep(0.2)
        yield RunningServer(grpc_target=target, rest_url=f"http://127.0.0.1:{rest_port}", pid=process.pid)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 7: object, 9: np.int64}  # DataType enum values


def _example_values(example: example_pb2.Example, name: str) -> list:
    feature = example.features.feature.get(name)
    if feature is None:
        return []
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def raw_inputs(signature: Any, serialized: bytes) -> dict[str, np.ndarray]:  # a ConcreteFunction
    """One row for a signature taking named raw tensors, read from a serialized tf.Example."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(serialized)
    inputs = {}
    for alias, info in signature.inputs.items():
        dims = [dim.size for dim in info.tensor_shape.dim][1:]
        dtype = _DTYPES.get(info.dtype)
        if dtype is None:
            raise ValueError(f"input {alias!r} has a dtype ({info.dtype}) the validator cannot fill")
        values = _example_values(example, alias)
        width = int(np.prod(dims)) if dims else 1
        if len(values) != width:
            empty = b"" if dtype is object else 0
            values = (values + [empty] * width)[:width]  # what parsing fills for an absent value
        inputs[alias] = np.asarray(values, dtype=dtype).reshape([1, *dims])
    return inputs


def _signature_inputs(name: str, signature: Any, serialized: bytes) -> dict[str, np.ndarray]:
    if list(signature.inputs) == [EXAMPLES_INPUT]:
        return {EXAMPLES_INPUT: np.asarray([serialized], dtype=object)}
    return raw_inputs(signature, serialized)


EXPLAIN_ROWS = 8  # rows whose attributions are checked: an explanation costs tens of gradient rows


def explain_completeness(client: Any, signature: Any, rows: Sequence[bytes]) -> dict[str, float | int]:
    """Integrated gradients' completeness on served rows: |sum of attributions - (score - baseline score)|,
    the largest over ``rows`` (the LGPD report states it beside the explanation method)."""
    from models.common.explain import ATTRIBUTION_PREFIX, BASELINE_KEY, EXPLAIN_SIGNATURE, SCORE_KEY

    gaps = []
    for row in rows:
        outputs = client.predict(SERVED_NAME, _signature_inputs(EXPLAIN_SIGNATURE, signature, row),
                                 signature=EXPLAIN_SIGNATURE)
        attributed = sum(float(np.sum(value)) for key, value in outputs.items() if key.startswith(ATTRIBUTION_PREFIX))
        explained = float(np.sum(outputs[SCORE_KEY])) - float(np.sum(outputs[BASELINE_KEY]))
        gaps.append(abs(attributed - explained))
    return {"explain_completeness_max_gap": max(gaps), "explain_rows": len(gaps)}


def answer_and_compare(server: RunningServer, rows: Sequence[bytes], settings: ValidationSettings,
                       result: ValidationResult) -> None:
    """Predict each row once per probability signature, time it, and compare the signatures' answers."""
    from models.common.explain import EXPLAIN_SIGNATURE
    from serving.client import GrpcClient, ServingClientError

    with GrpcClient(server.grpc_target, timeout=max(30.0, settings.latency_budget_ms / 100), retries=0) as client:
        _spec, signature_map = client.metadata(SERVED_NAME)
        # explain also outputs the probability, but is an attribution (tens of gradient rows per row): the
        # latency budget is the predictions'; its score equals serving_raw's (tests/models/*explain*).
        signatures = {name: sig for name, sig in sorted(signature_map.signature_def.items())
                      if settings.prediction_key in sig.outputs and not name.startswith("__")
                      and name != EXPLAIN_SIGNATURE}
        if not signatures:
            result.reasons.append(f"no signature outputs {settings.prediction_key!r}; "
                                  f"signatures: {', '.join(sorted(signature_map.signature_def))}")
            return
        warm_up = next(iter(signatures))
        client.predict(SERVED_NAME, _signature_inputs(warm_up, signatures[warm_up], rows[0]), signature=warm_up)
        latencies: list[float] = []
        answers: dict[str, np.ndarray] = {}
        for name, signature in signatures.items():
            probabilities = []
            for row in rows:
                inputs = _signature_inputs(name, signature, row)
                started = time.perf_counter()
                outputs = client.predict(SERVED_NAME, inputs, signature=name,
                                         output_filter=[settings.prediction_key])
                latencies.append((time.perf_counter() - started) * 1000.0)
                probabilities.append(np.asarray(outputs[settings.prediction_key], dtype=np.float64).reshape(-1))
            answers[name] = np.concatenate(probabilities)
        if EXPLAIN_SIGNATURE in signature_map.signature_def:
            try:
                result.values.update(explain_completeness(client, signature_map.signature_def[EXPLAIN_SIGNATURE],
                                                          rows[:EXPLAIN_ROWS]))
            except ServingClientError as error:  # a decision this version takes could not be explained (art. 20)
                result.reasons.append(f"the explain signature could not be served: {error}")
    p95 = float(np.percentile(latencies, 95))
    result.values.update(signatures=",".join(signatures), rows=len(rows), requests=len(latencies),
                         latency_p50_ms=float(np.percentile(latencies, 50)), latency_p95_ms=p95,
                         latency_budget_ms=settings.latency_budget_ms)
    if p95 > settings.latency_budget_ms:
        result.reasons.append(f"Predict latency p95 {p95:.1f} ms over {len(latencies)} requests exceeds the "
                              f"budget of {settings.latency_budget_ms:g} ms")
    first_name, first = next(iter(answers.items()))
    if not np.all(np.isfinite(first)):
        result.reasons.append(f"signature {first_name} answered non-finite probabilities")
    worst = 0.0
    for name, other in answers.items():
        difference = float(np.max(np.abs(other - first))) if len(other) == len(first) else float("inf")
        worst = max(worst, difference)
        if difference > settings.signature_tolerance:
            result.reasons.append(f"signatures {first_name} and {name} disagree by up to {difference:.3g} "
                                  f"(tolerance {settings.signature_tolerance:g})")
    result.values["max_signature_difference"] = worst


def validate_model(saved_model_dir: Path, rows: Sequence[bytes], settings: ValidationSettings) -> ValidationResult:
    """All checks; a model with non-finite weights is not served at all."""
    result = ValidationResult()
    bad = non_finite_variables(saved_model_dir)
    result.values["non_finite_variables"] = len(bad)
    if bad:
        shown = ", ".join(bad[:10]) + (f" (+{len(bad) - 10} more)" if len(bad) > 10 else "")
        result.reasons.append(f"NaN or Inf in exported variable(s): {shown}")
        return result
    if not rows:
        result.reasons.append("no eval rows to send to the model server")
        return result
    started = time.monotonic()
    try:
        with model_server(saved_model_dir, settings.startup_timeout_s) as server:
            result.values["load_seconds"] = round(time.monotonic() - started, 2)
            answer_and_compare(server, rows, settings, result)
    except Exception as error:  # noqa: BLE001 - any failure to load or answer is the verdict, with its reason
        result.reasons.append(f"the model server could not serve the model: {type(error).__name__}: {error}")
    return result
