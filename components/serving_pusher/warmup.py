"""Warm-up records for a pushed version: ``assets.extra/tf_serving_warmup_requests``, built from eval rows.

TF Serving (``--enable_model_warmup``, on by default) and our server replay this TFRecord file of
``PredictionLog`` records while a version loads, so the first real request does not pay for the graph's
first run. One record per serving signature and batch size: Classify and Regress signatures get the rows as
``tf.Example``s, a Predict signature on serialized examples gets them as a string tensor, and one on named
raw inputs gets each row's features (``raw_inputs``, as the ModelValidator feeds it). Every record is
replayed against the model before it is kept: a record the model refuses would fail the version's load in
TF Serving, so its signature is left out (and logged) instead.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from absl import logging
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from components.model_validator.checks import raw_inputs
from serving.protocol.tensors import to_proto
from serving.servables.signature import CLASSIFY_METHOD, REGRESS_METHOD
from serving.servables.warmup import WARMUP_FILE, replay

WARMUP_PATH = f"assets.extra/{WARMUP_FILE}"
BATCH_SIZES = (1, 8)  # a single row and a small batch: the shapes the first requests most often have


def _input(rows: Sequence[bytes]) -> input_pb2.Input:
    proto = input_pb2.Input()
    for row in rows:
        proto.example_list.examples.add().CopyFrom(example_pb2.Example.FromString(row))
    return proto


def _predict_inputs(signature: meta_graph_pb2.SignatureDef, rows: Sequence[bytes]) -> dict[str, np.ndarray]:
    inputs = signature.inputs
    if len(inputs) == 1 and next(iter(inputs.values())).dtype == types_pb2.DT_STRING:
        alias = next(iter(inputs))
        return {alias: np.asarray(list(rows), dtype=object)}
    per_row = [raw_inputs(signature, row) for row in rows]
    return {alias: np.concatenate([row[alias] for row in per_row]) for alias in inputs}


def signature_log(key: str, signature: meta_graph_pb2.SignatureDef, rows: Sequence[bytes],
                  model_name: str) -> prediction_log_pb2.PredictionLog:
    """The request a client would send to ``key`` with ``rows``, as the PredictionLog TF Serving replays."""
    if signature.method_name in (CLASSIFY_METHOD, REGRESS_METHOD):
        request_type = (classification_pb2.ClassificationRequest if signature.method_name == CLASSIFY_METHOD
                        else regression_pb2.RegressionRequest)
        request = request_type(input=_input(rows))
        request.model_spec.name, request.model_spec.signature_name = model_name, key
        if signature.method_name == CLASSIFY_METHOD:
            return prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=request))
        return prediction_log_pb2.PredictionLog(regress_log=prediction_log_pb2.RegressLog(request=request))
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name, predict.model_spec.signature_name = model_name, key
    for alias, value in _predict_inputs(signature, rows).items():
        predict.inputs[alias].CopyFrom(to_proto(value))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=predict))


def warmup_logs(model_dir: Path, rows: Sequence[bytes], model_name: str,
                batch_sizes: Sequence[int] = BATCH_SIZES) -> list[prediction_log_pb2.PredictionLog]:
    """Records for every serving signature of the SavedModel at ``model_dir``, each shown to replay
    against the model; a signature the rows cannot feed or the model refuses is left out with a warning."""
    from serving.servables.saved_model import SavedModelServable

    if not rows:
        return []
    servable = SavedModelServable(model_name, 0, model_dir)
    servable.load(prepare=False)
    logs: list[prediction_log_pb2.PredictionLog] = []
    try:
        signatures: Mapping[str, meta_graph_pb2.SignatureDef] = servable.definitions
        for key in sorted(k for k in signatures if not k.startswith("__")):
            built = []
            try:
                for size in sorted({min(size, len(rows)) for size in batch_sizes}):
                    log = signature_log(key, signatures[key], rows[:size], model_name)
                    replay(servable, log)
                    built.append(log)
            except Exception as exc:  # noqa: BLE001 - whatever the model or the rows refuse leaves this signature out
                logging.warning("No warm-up records for signature %s: %s", key, exc)
                continue
            logs.extend(built)
    finally:
        servable.unload()
    return logs


def write_warmup_file(version_dir: Path, logs: Sequence[prediction_log_pb2.PredictionLog]) -> Path | None:
    """Write ``logs`` as ``<version_dir>/assets.extra/tf_serving_warmup_requests`` (TFRecord); None without logs."""
    import tensorflow as tf

    if not logs:
        return None
    target = Path(version_dir) / WARMUP_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(target)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return target
