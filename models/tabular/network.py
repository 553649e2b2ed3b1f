"""The tabular classifier's network (Keras Functional API); TensorFlow only, so it builds anywhere."""
from __future__ import annotations

import tensorflow as tf

from models.tabular.features import OOV_BUCKETS, TabularSettings, transformed_name

EMBEDDING_DIM = 8


def to_model_inputs(settings: TabularSettings, transformed: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Transformed [batch] tensors -> the model's named [batch, 1] inputs (the label is dropped)."""
    names = [transformed_name(name) for name in settings.data.features]
    return {name: tf.reshape(transformed[name], [-1, 1]) for name in names}


def build_model(settings: TabularSettings, vocabulary_sizes: dict[str, int]) -> tf.keras.Model:
    """Numeric inputs concatenated with categorical embeddings, then a dense stack to one probability."""
    inputs, encoded = [], []
    for name in settings.numeric_features:
        layer = tf.keras.Input(shape=(1,), name=transformed_name(name), dtype=tf.float32)
        inputs.append(layer)
        encoded.append(layer)
    for name in settings.categorical_features:
        layer = tf.keras.Input(shape=(1,), name=transformed_name(name), dtype=tf.int64)
        inputs.append(layer)
        embedded = tf.keras.layers.Embedding(vocabulary_sizes[name] + OOV_BUCKETS, EMBEDDING_DIM)(layer)
        encoded.append(tf.keras.layers.Flatten()(embedded))
    hidden = tf.keras.layers.Concatenate()(encoded) if len(encoded) > 1 else encoded[0]
    for units in settings.model.hidden_units:
        hidden = tf.keras.layers.Dense(units, activation="relu")(hidden)
        if settings.model.dropout:
            hidden = tf.keras.layers.Dropout(settings.model.dropout, seed=settings.training.seed)(hidden)
    output = tf.keras.layers.Dense(1, activation="sigmoid", name="probability")(hidden)
    return tf.keras.Model(inputs=inputs, outputs=output, name="tabular_classifier")
