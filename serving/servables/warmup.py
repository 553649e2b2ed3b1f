"""Replay ``assets.extra/tf_serving_warmup_requests`` before a version takes traffic, as TF Serving does."""
from __future__ import annotations

import time
from pathlib import Path

from tensorflow_serving.apis import input_pb2, prediction_log_pb2

from serving.observability.metrics import Registry
from serving.protocol.errors import Code, ServingError, invalid_argument
from serving.protocol.tensors import from_proto

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000


def examples_from_input(input_proto: input_pb2.Input) -> list[bytes]:
    """Serialized tf.Example protos; the context is merged into each example by concatenation (as TF Serving)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        context = input_proto.example_list_with_context.context.SerializeToString()
        examples = [context + e.SerializeToString() for e in input_proto.example_list_with_context.examples]
    else:
        raise invalid_argument("Input is empty.")
    if not examples:
        raise invalid_argument("Input is empty.")
    return examples


def _records(path: Path) -> list[bytes]:
    """TFRecord payloads through TF's C++ record reader (CRC-checked, as tf.data's): ~0.1 ms for a few
    records, where building a tf.data pipeline for them took ~50 ms of every version load."""
    from tensorflow.python.lib.io import _pywrap_record_io

    try:
        records = list(_pywrap_record_io.RecordIterator(str(path), ""))
    except Exception as exc:  # noqa: BLE001 - a corrupt file fails the version load
        raise ServingError(Code.DATA_LOSS, f"Failed to read warmup file {path}: {exc}") from None
    if not records and path.stat().st_size > 0:
        raise ServingError(Code.DATA_LOSS, f"Failed to read warmup file {path}: not a TFRecord file of PredictionLog")
    return records


def warm_up(servable: object, metrics: Registry, iterations: int = 1) -> int:
    """Run every warmup record ``iterations`` times; any failure fails the load. Returns records read."""
    path = Path(servable.path) / "assets.extra" / WARMUP_FILE  # type: ignore[attr-defined]
    if not path.exists():
        return 0
    started = time.perf_counter()
    status = "OK"
    try:
        records = _records(path)
        if len(records) > MAX_RECORDS:
            raise invalid_argument(f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}")
        for raw in records:
            log = prediction_log_pb2.PredictionLog()
            try:
                log.ParseFromString(raw)
            except Exception:  # noqa: BLE001
                raise ServingError(Code.DATA_LOSS, "Failed to parse warmup record") from None
            for _ in range(iterations):
                replay(servable, log)
        metrics.warmup_records.inc((str(path.parent.parent), "OK"), len(records))
        return len(records)
    except ServingError as exc:
        status = exc.message
        raise
    finally:
        metrics.warmup_latency.observe((str(path.parent.parent), status), (time.perf_counter() - started) * 1e6)


def replay(servable: object, log: prediction_log_pb2.PredictionLog) -> None:
    """Run one PredictionLog's request against ``servable`` (its answer is dropped); raises what a request would."""
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        request = log.predict_log.request
        signature = servable.signature(request.model_spec.signature_name)  # type: ignore[attr-defined]
        inputs = {alias: from_proto(tensor, alias) for alias, tensor in request.inputs.items()}
        servable.predict(signature, inputs, request.output_filter)  # type: ignore[attr-defined]
    elif kind in ("classify_log", "regress_log"):
        request = getattr(log, kind).request
        signature = servable.signature(request.model_spec.signature_name)  # type: ignore[attr-defined]
        run = servable.classify if kind == "classify_log" else servable.regress  # type: ignore[attr-defined]
        run(signature, examples_from_input(request.input))
    elif kind == "multi_inference_log":
        request = log.multi_inference_log.request
        examples = examples_from_input(request.input)
        for task in request.tasks:
            signature = servable.signature(task.model_spec.signature_name)  # type: ignore[attr-defined]
            if task.method_name.endswith("classify"):
                servable.classify(signature, examples)  # type: ignore[attr-defined]
            else:
                servable.regress(signature, examples)  # type: ignore[attr-defined]
    else:
        raise ServingError(Code.UNIMPLEMENTED, "Unsupported log_type for warmup")
