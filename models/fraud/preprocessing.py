"""Transform's preprocessing_fn for card fraud; the same graph runs inside every serving signature.

Current transaction: numbers log1p'd (heavy-tailed ones) and z-scored, strings mapped to vocabulary
ids, the time column split into hour of day and day of week, plus the fixed `amount_band` slice.
Card history: each per-step value is scaled with the statistics of the matching current column, so
a history amount and the current amount sit on one scale and the model can compare them; string
steps reuse the current column's vocabulary (one embedding for both). Padded steps are zeroed.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from models.fraud.features import (
    AMOUNT_BAND,
    AMOUNT_BAND_EDGES,
    DAY_OF_WEEK,
    DAYS_PER_WEEK,
    HOUR_OF_DAY,
    HOURS_PER_DAY,
    OOV_BUCKETS,
    FraudSettings,
    transformed_name,
    vocabulary_name,
)

SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86_400
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday is day 0


def _dense(tensor: tf.Tensor | tf.SparseTensor, default: Any) -> tf.Tensor:
    """A [batch] tensor; optional columns arrive as SparseTensors with missing values."""
    if isinstance(tensor, tf.SparseTensor):
        tensor = tf.sparse.to_dense(
            tf.SparseTensor(tensor.indices, tensor.values, [tensor.dense_shape[0], 1]), default)
    return tf.reshape(tensor, [-1])


def _dense_sequence(tensor: tf.Tensor | tf.SparseTensor, length: int, default: Any) -> tf.Tensor:
    """A [batch, length] tensor from a fixed-length list feature (dense, or sparse without a schema shape)."""
    if isinstance(tensor, tf.SparseTensor):
        tensor = tf.sparse.to_dense(
            tf.SparseTensor(tensor.indices, tensor.values, [tensor.dense_shape[0], length]), default)
    return tf.reshape(tensor, [-1, length])


def _z_score(value: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor) -> tf.Tensor:
    """(value - mean) / std; a constant column becomes 0 rather than NaN."""
    return tf.math.divide_no_nan(value - mean, tf.sqrt(variance))


def _numeric(value: tf.Tensor, log: bool) -> tf.Tensor:
    value = tf.cast(value, tf.float32)
    return tf.math.log1p(tf.maximum(value, 0.0)) if log else value


def hour_and_weekday(seconds: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """int64 seconds since the epoch (UTC) -> (hour of day 0..23, day of week 0..6, Monday = 0)."""
    seconds = tf.cast(seconds, tf.int64)
    hour = tf.math.floormod(tf.math.floordiv(seconds, SECONDS_PER_HOUR), HOURS_PER_DAY)
    weekday = tf.math.floormod(tf.math.floordiv(seconds, SECONDS_PER_DAY) + EPOCH_WEEKDAY, DAYS_PER_WEEK)
    return hour, weekday


def amount_band(amount: tf.Tensor) -> tf.Tensor:
    """Band index of each raw amount under the fixed AMOUNT_BAND_EDGES (int64, 0..len(edges))."""
    bands = tf.raw_ops.Bucketize(input=tf.cast(amount, tf.float32), boundaries=list(AMOUNT_BAND_EDGES))
    return tf.cast(bands, tf.int64)


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, tf.Tensor]:
    """Raw anonymized transactions with card history -> the model's features, `amount_band`, the label."""
    settings = FraudSettings.from_custom_config(custom_config)
    sequence, length = settings.sequence, settings.sequence.length
    outputs: dict[str, tf.Tensor] = {}
    moments: dict[str, tuple[tf.Tensor, tf.Tensor]] = {}
    vocabularies: dict[str, Any] = {}

    for name in settings.numeric_features:
        value = _numeric(_dense(inputs[name], 0), settings.is_log_scaled(name))
        moments[name] = (tft.mean(value), tft.var(value))
        outputs[transformed_name(name)] = _z_score(value, *moments[name])
    for name in settings.categorical_features:
        value = _dense(inputs[name], "")
        vocabularies[name] = tft.vocabulary(value, top_k=settings.model.options.vocabulary_top_k,
                                            vocab_filename=vocabulary_name(name))
        outputs[transformed_name(name)] = tft.apply_vocabulary(value, vocabularies[name],
                                                               num_oov_buckets=OOV_BUCKETS)
    time_feature = settings.model.options.time_feature
    if settings.uses_time and time_feature is not None:  # uses_time implies a time feature; mypy needs it named
        hour, weekday = hour_and_weekday(_dense(inputs[time_feature], 0))
        outputs[transformed_name(HOUR_OF_DAY)] = hour
        outputs[transformed_name(DAY_OF_WEEK)] = weekday
    outputs[AMOUNT_BAND] = amount_band(_dense(inputs[settings.model.options.amount_feature], 0))

    mask = tf.cast(_dense_sequence(inputs[sequence.mask], length, 0), tf.int64)
    real = tf.cast(mask, tf.bool)
    mask_float = tf.cast(mask, tf.float32)
    outputs[transformed_name(sequence.mask)] = mask
    count = tf.cast(_dense(inputs[sequence.count], 0), tf.float32)
    outputs[transformed_name(sequence.count)] = count / float(length)

    seconds = _numeric(_dense_sequence(inputs[sequence.seconds_since], length, 0.0), log=True)
    seen = tf.boolean_mask(seconds, real)
    outputs[transformed_name(sequence.seconds_since)] = _z_score(
        seconds, tft.mean(seen), tft.var(seen)) * mask_float

    for name, kind in sequence.value_features.items():
        base = sequence.base_name(name)
        if kind == "string":
            value = _dense_sequence(inputs[name], length, "")
            vocabulary = vocabularies.get(base)
            if vocabulary is None:  # no current column to share a vocabulary with: learn one
                vocabulary = tft.vocabulary(tf.boolean_mask(value, real),
                                            top_k=settings.model.options.vocabulary_top_k,
                                            vocab_filename=vocabulary_name(name))
            ids = tft.apply_vocabulary(value, vocabulary, num_oov_buckets=OOV_BUCKETS)
            outputs[transformed_name(name)] = ids * mask  # padding -> 0; the model ignores it anyway
        else:
            value = _numeric(_dense_sequence(inputs[name], length, 0), settings.is_log_scaled(base))
            if base not in moments:  # no current column to share a scale with: use the real steps
                seen = tf.boolean_mask(value, real)
                moments[base] = (tft.mean(seen), tft.var(seen))
            outputs[transformed_name(name)] = _z_score(value, *moments[base]) * mask_float

    outputs[settings.data.label] = tf.cast(_dense(inputs[settings.data.label], 0), tf.int64)
    return outputs
