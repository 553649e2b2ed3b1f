"""A small SavedModel shaped like the pipeline's push, so the server can be tried and tested alone.

The export mirrors what the pipeline's Pusher writes under ``<model_base_path>/<version>/``:
``serving_default`` on serialized ``tf.Example`` protos, ``predict_raw`` on raw named float
features, plus ``classify`` and ``regress`` signatures for TF Serving's Classify/Regress APIs,
an optional warmup file and an optional reference-statistics file for drift metrics.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from collections.abc import Sequence
from pathlib import Path

import numpy as np

FEATURES: tuple[str, ...] = tuple(f"feature_{i}" for i in range(30))
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def export_demo_model(
    base_path: str | os.PathLike[str],
    version: int = 1,
    *,
    features: Sequence[str] = FEATURES,
    hidden_units: int = 16,
    seed: int = 0,
    bias: float = 0.0,
    warmup_records: int = 0,
    reference_stats: bool = True,
) -> Path:
    """Export a tiny tf_keras binary classifier as ``<base_path>/<version>`` and return that path.

    ``bias`` shifts the output logit so two versions answer differently (useful to tell them apart).
    """
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    feature_names = list(features)
    inputs = {name: keras.Input(shape=(1,), name=name, dtype=tf.float32) for name in feature_names}
    x = keras.layers.Concatenate()(list(inputs.values()))
    x = keras.layers.Dense(hidden_units, activation="relu")(x)
    logit = keras.layers.Dense(1)(x)
    logit = keras.layers.Lambda(lambda t: t + bias)(logit)
    probability = keras.layers.Activation("sigmoid", name="probability")(logit)
    model = keras.Model(inputs=inputs, outputs=probability)

    feature_spec = {name: tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]) for name in feature_names}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, feature_spec)
        return {"outputs": model(parsed, training=False)}

    raw_specs = [tf.TensorSpec([None], tf.float32, name=name) for name in feature_names]

    @tf.function(input_signature=raw_specs)
    def serve_raw(*columns: tf.Tensor) -> dict[str, tf.Tensor]:
        batch = {name: tf.reshape(column, [-1, 1]) for name, column in zip(feature_names, columns, strict=True)}
        return {"probabilities": model(batch, training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        probability = model(tf.io.parse_example(inputs, feature_spec), training=False)
        scores = tf.concat([1.0 - probability, probability], axis=1)
        classes = tf.tile(tf.constant([["0", "1"]]), [tf.shape(scores)[0], 1])
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": model(tf.io.parse_example(inputs, feature_spec), training=False)}

    export_dir = Path(base_path) / str(version)
    tmp_dir = Path(base_path) / f".tmp-{version}"
    signatures = {
        "serving_default": serve_examples,
        "predict_raw": serve_raw,
        "classify": classify,
        "regress": regress,
    }
    tf.saved_model.save(model, str(tmp_dir), signatures=signatures)
    _set_method_names(tmp_dir, {"classify": CLASSIFY_METHOD, "regress": REGRESS_METHOD})
    if warmup_records:
        write_warmup_requests(tmp_dir, make_examples(warmup_records, feature_names, seed=seed))
    if reference_stats:
        rng = np.random.default_rng(seed)
        sample = {name: rng.normal(size=2000).astype(np.float32) for name in feature_names}
        from serving.observability.drift import build_reference, write_reference

        write_reference(tmp_dir, build_reference(sample))
    tmp_dir.rename(export_dir)  # the folder appears complete, as a pusher should publish it
    return export_dir


def _set_method_names(export_dir: Path, method_names: dict[str, str]) -> None:
    """TF2 saves every signature as Predict; TF Serving's Classify/Regress need the method name."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = export_dir / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        for key, method in method_names.items():
            if key in meta_graph.signature_def:
                meta_graph.signature_def[key].method_name = method
    path.write_bytes(saved_model.SerializeToString())


def make_examples(count: int, features: Sequence[str] = FEATURES, *, seed: int = 0) -> list[bytes]:
    """Serialized ``tf.Example`` protos with random float features."""
    from tensorflow.core.example import example_pb2

    rng = np.random.default_rng(seed)
    records = []
    for _ in range(count):
        example = example_pb2.Example()
        for name in features:
            example.features.feature[name].float_list.value.append(float(rng.normal()))
        records.append(example.SerializeToString())
    return records


def write_warmup_requests(export_dir: Path, examples: list[bytes], model_name: str = "model") -> Path:
    """Write ``assets.extra/tf_serving_warmup_requests`` (TFRecord of PredictionLog), as TF Serving reads it."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    target = export_dir / "assets.extra" / "tf_serving_warmup_requests"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(target)) as writer:
        for example in examples:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = "serving_default"
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return target


def raw_row(seed: int = 0, features: Sequence[str] = FEATURES) -> dict[str, float]:
    """One row for ``predict_raw``: feature name to float."""
    rng = np.random.default_rng(seed)
    return {name: float(rng.normal()) for name in features}

