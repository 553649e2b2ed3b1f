"""Serving signatures: serialized tf.Examples (TF Serving's usual input) and raw named tensors (REST rows).

Both run the Transform graph inside the SavedModel, so clients send raw values and never
re-implement preprocessing.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf
import tensorflow_transform as tft

EXAMPLES_SIGNATURE = "serving_default"
RAW_SIGNATURE = "serving_raw"
OUTPUT_KEY = "probability"


def make_serving_signatures(
    model: tf.keras.Model,
    transform_output: tft.TFTransformOutput,
    label: str,
    to_model_inputs: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]],
) -> dict[str, tf.types.experimental.ConcreteFunction]:
    """Build both signatures; ``to_model_inputs`` maps transformed features to the model's inputs."""
    model.tft_layer = transform_output.transform_features_layer()
    raw_spec = dict(transform_output.raw_feature_spec())
    raw_spec.pop(label, None)

    def predict(raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = model.tft_layer(raw_features)
        return {OUTPUT_KEY: model(to_model_inputs(transformed))}

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def serve_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(tf.io.parse_example(serialized, raw_spec))

    raw_inputs = {name: tf.TensorSpec(shape=[None], dtype=spec.dtype, name=name)
                  for name, spec in sorted(raw_spec.items())}

    @tf.function(input_signature=[raw_inputs])
    def serve_raw(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        # One scalar per row in, the schema's fixed shape (e.g. [1]) out, as parse_example gives.
        shaped = {name: tf.reshape(value, [-1, *raw_spec[name].shape]) for name, value in features.items()}
        return predict(shaped)

    return {
        EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        RAW_SIGNATURE: serve_raw.get_concrete_function(),
    }
