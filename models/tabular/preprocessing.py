"""Transform's preprocessing_fn for tabular data; the same graph runs inside the serving signatures."""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from models.tabular.features import OOV_BUCKETS, TabularSettings, transformed_name, vocabulary_name


def _dense(tensor: tf.Tensor | tf.SparseTensor, default: Any) -> tf.Tensor:
    """A [batch] dense tensor; optional columns arrive as SparseTensors with missing values."""
    if isinstance(tensor, tf.SparseTensor):
        tensor = tf.sparse.to_dense(
            tf.SparseTensor(tensor.indices, tensor.values, [tensor.dense_shape[0], 1]), default)
    return tf.reshape(tensor, [-1])


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, tf.Tensor]:
    """Z-score numeric columns, map string columns to vocabulary ids, pass the label through."""
    settings = TabularSettings.from_custom_config(custom_config)
    outputs: dict[str, tf.Tensor] = {}
    for name in settings.numeric_features:
        value = tf.cast(_dense(inputs[name], 0), tf.float32)
        outputs[transformed_name(name)] = tft.scale_to_z_score(value)
    for name in settings.categorical_features:
        outputs[transformed_name(name)] = tft.compute_and_apply_vocabulary(
            _dense(inputs[name], ""), num_oov_buckets=OOV_BUCKETS, vocab_filename=vocabulary_name(name))
    outputs[settings.data.label] = tf.cast(_dense(inputs[settings.data.label], 0), tf.int64)
    return outputs
