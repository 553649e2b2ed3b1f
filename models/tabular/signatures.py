"""Serving signatures: serialized tf.Examples (TF Serving's usual input), raw named tensors (REST rows) and
``explain`` (the raw inputs -> the probability, the baseline's, one integrated-gradients attribution per raw
feature; models/common/explain.py).

All run the Transform graph inside the SavedModel, so clients send raw values and never
re-implement preprocessing.
"""
from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
import tensorflow_transform as tft

from models.common.explain import EXPLAIN_SIGNATURE, make_explainer
from models.common.settings import ExplainSettings

EXAMPLES_SIGNATURE = "serving_default"
RAW_SIGNATURE = "serving_raw"
OUTPUT_KEY = "probability"


def make_serving_signatures(
    model: tf.keras.Model,
    transform_output: tft.TFTransformOutput,
    label: str,
    raw_features: list[str],
    to_model_inputs: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]],
    explain_settings: ExplainSettings | None = None,
    explain_groups: dict[str, str | None] | None = None,
) -> dict[str, tf.types.experimental.ConcreteFunction]:
    """Build the signatures; ``to_model_inputs`` maps transformed features to the model's inputs; with
    ``explain_groups`` (model input -> raw feature) the ``explain`` signature too.

    The raw signature takes only ``raw_features`` (the columns the model uses), one value per row.
    """
    model.tft_layer = transform_output.transform_features_layer()
    raw_spec = dict(transform_output.raw_feature_spec())
    raw_spec.pop(label, None)

    def predict(raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = model.tft_layer(raw_features)
        return {OUTPUT_KEY: model(to_model_inputs(transformed))}

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def serve_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(tf.io.parse_example(serialized, raw_spec))

    raw_inputs = {name: tf.TensorSpec(shape=[None], dtype=raw_spec[name].dtype, name=name)
                  for name in sorted(raw_features)}

    @tf.function(input_signature=[raw_inputs])
    def serve_raw(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return predict({name: _as_parsed(value, raw_spec[name]) for name, value in features.items()})

    signatures = {
        EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        RAW_SIGNATURE: serve_raw.get_concrete_function(),
    }
    if explain_groups is not None:
        explainer = make_explainer(model, explain_groups, explain_settings or ExplainSettings())

        @tf.function(input_signature=[raw_inputs])
        def explain(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            parsed = {name: _as_parsed(value, raw_spec[name]) for name, value in features.items()}
            return explainer(to_model_inputs(model.tft_layer(parsed)))

        signatures[EXPLAIN_SIGNATURE] = explain.get_concrete_function()
    return signatures


def _as_parsed(value: tf.Tensor, spec: tf.io.FixedLenFeature | tf.io.VarLenFeature) -> tf.Tensor | tf.SparseTensor:
    """One value per row, shaped as tf.io.parse_example would give it for this feature spec."""
    if isinstance(spec, tf.io.VarLenFeature):
        return tf.sparse.from_dense(tf.reshape(value, [-1, 1]))
    return tf.reshape(value, [-1, *spec.shape])
