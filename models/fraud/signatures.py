"""Serving signatures of the fraud model, all running the Transform graph inside the SavedModel.

- ``serving_default``: serialized tf.Examples (TF Serving's usual input, and what the Evaluator sends);
- ``serving_raw``: raw features by name, what a REST client has at hand: current-transaction columns
  as [batch] and card-history lists as [batch, length];
- ``transform_features``: serialized tf.Examples with the label -> transformed features, so TFMA can
  slice by features that exist only after Transform (``amount_band``);
- ``explain``: serving_raw's inputs -> the probability, the baseline's and one integrated-gradients
  attribution per current-transaction column plus one for the card history (models/common/explain.py).
"""
from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
import tensorflow_transform as tft

from models.common.explain import EXPLAIN_SIGNATURE, make_explainer
from models.common.settings import HISTORY_GROUP
from models.fraud.features import DAY_OF_WEEK, HOUR_OF_DAY, FraudSettings, transformed_name

EXAMPLES_SIGNATURE = "serving_default"
RAW_SIGNATURE = "serving_raw"
TRANSFORM_SIGNATURE = "transform_features"
OUTPUT_KEY = "probability"


def raw_input_specs(settings: FraudSettings,
                    raw_spec: dict[str, tf.io.FixedLenFeature | tf.io.VarLenFeature]) -> dict[str, tf.TensorSpec]:
    """serving_raw's inputs: the columns the model reads, scalars [None] and history lists [None, length]."""
    specs = {}
    for name in [*settings.data.features, *settings.sequence.features]:
        if name not in raw_spec:
            raise ValueError(
                f"the Transform schema has no column {name!r}, which custom_config lists; the schema and "
                f"data.features / the sequence settings disagree (schema columns: {sorted(raw_spec)})")
        is_history = name in settings.sequence.features and name != settings.sequence.count
        shape = [None, settings.sequence.length] if is_history else [None]
        specs[name] = tf.TensorSpec(shape=shape, dtype=raw_spec[name].dtype, name=name)
    return specs


def explain_groups(settings: FraudSettings, model_inputs: list[str]) -> dict[str, str | None]:
    """Model input -> the raw feature it is attributed to: current columns to themselves, hour and weekday
    to the time column, every history step value to the card history; the history's mask and count (how
    many steps there are) are held at their values (None)."""
    sequence = settings.sequence
    held = {transformed_name(sequence.mask), transformed_name(sequence.count)}
    time = settings.model.options.time_feature
    named: dict[str, str | None] = {transformed_name(name): name for name in settings.data.features}
    named.update({transformed_name(HOUR_OF_DAY): time, transformed_name(DAY_OF_WEEK): time})
    history = {transformed_name(name) for name in sequence.features}
    groups: dict[str, str | None] = {}
    for name in model_inputs:
        if name in held:
            groups[name] = None
        elif name in history:
            groups[name] = HISTORY_GROUP
        elif name in named:
            groups[name] = named[name]
        else:
            raise ValueError(f"model input {name!r} is neither a data.features column nor a history feature; "
                             "the explain signature cannot name the feature it comes from")
    return groups


def _as_parsed(value: tf.Tensor, spec: tf.io.FixedLenFeature | tf.io.VarLenFeature) -> tf.Tensor | tf.SparseTensor:
    """A raw [batch] or [batch, length] tensor in the form tf.io.parse_example gives for `spec`."""
    if isinstance(spec, tf.io.FixedLenFeature):
        return tf.reshape(value, [-1, *spec.shape])
    # A column without a fixed shape in the schema (e.g. sometimes empty): a SparseTensor whose
    # empty strings are missing values, as in a tf.Example with an empty feature.
    rows = tf.reshape(value, [tf.shape(value)[0], -1])
    return tf.sparse.from_dense(rows)


def make_serving_signatures(
    model: tf.keras.Model,
    transform_output: tft.TFTransformOutput,
    settings: FraudSettings,
    to_model_inputs: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]],
) -> dict[str, tf.types.experimental.ConcreteFunction]:
    """The four signatures; ``to_model_inputs`` maps transformed features to the model's inputs."""
    model.tft_layer = transform_output.transform_features_layer()
    full_spec = dict(transform_output.raw_feature_spec())
    raw_spec = {name: spec for name, spec in full_spec.items() if name != settings.data.label}

    def predict(raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = model.tft_layer(raw_features)
        # an ensemble outputs one probability per member: serve their mean, [batch, 1]
        output = model(to_model_inputs(transformed), training=False)
        return {OUTPUT_KEY: tf.reduce_mean(output, axis=-1, keepdims=True)}

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def serve_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(tf.io.parse_example(serialized, raw_spec))

    @tf.function(input_signature=[raw_input_specs(settings, raw_spec)])
    def serve_raw(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return predict({name: _as_parsed(value, raw_spec[name]) for name, value in features.items()})

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def transform_features(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return model.tft_layer(tf.io.parse_example(serialized, full_spec))

    explainer = make_explainer(model, explain_groups(settings, model.input_names), settings.model.explain)

    @tf.function(input_signature=[raw_input_specs(settings, raw_spec)])
    def explain(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        parsed = {name: _as_parsed(value, raw_spec[name]) for name, value in features.items()}
        return explainer(to_model_inputs(model.tft_layer(parsed)))

    return {
        EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        RAW_SIGNATURE: serve_raw.get_concrete_function(),
        TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
        EXPLAIN_SIGNATURE: explain.get_concrete_function(),
    }
