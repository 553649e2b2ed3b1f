"""Custom Keras layers of the fraud model: history attention keyed by the transaction, gated fusion,
history steps relative to the current transaction.

Both are registered serializable (package ``esteira_fraud``) so ``tf.keras.models.load_model`` rebuilds
them from their ``get_config`` (TFMA loads Keras models that way), and both are plain Keras 2 layers
that own their weights through ``add_weight``.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

PACKAGE = "esteira_fraud"
_NEGATIVE = -1e9


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class MaskedAttentionPooling(tf.keras.layers.Layer):
    """Pool a card's history into one vector, attending to the steps that matter for *this* transaction.

    Additive (Bahdanau) attention: score_t = v . tanh(W_k h_t + W_q q + b), where h_t are the encoded
    history steps [batch, steps, dim], q is the current transaction's encoding [batch, query_dim] and
    mask [batch, steps] is 1 for real steps and 0 for padding. Why keyed by the transaction: the same
    history means different things for a 2-currency-unit digital purchase (look at the burst of tiny
    amounts just before) and a far-away electronics purchase (look at where the card was last seen).

    Padded steps get exactly zero weight, so their values never reach the output; a card with no
    history at all pools to the zero vector (its weights are all zero, not NaN).
    Inputs: [sequence, query, mask]. Output: [batch, dim], or ([batch, dim], [batch, steps] weights)
    with ``return_weights=True``.
    """

    def __init__(self, units: int, return_weights: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"MaskedAttentionPooling needs units >= 1, got {units}")
        self.units = int(units)
        self.return_weights = bool(return_weights)

    def build(self, input_shape: list[tf.TensorShape]) -> None:
        sequence_shape, query_shape, _ = (tf.TensorShape(shape) for shape in input_shape)
        if sequence_shape.rank != 3 or query_shape.rank != 2:
            raise ValueError(
                "MaskedAttentionPooling takes [sequence [batch, steps, dim], query [batch, dim], "
                f"mask [batch, steps]]; got shapes {sequence_shape}, {query_shape}")
        self.key_kernel = self.add_weight(
            name="key_kernel", shape=(sequence_shape[-1], self.units), initializer="glorot_uniform")
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(query_shape[-1], self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.score_vector = self.add_weight(
            name="score_vector", shape=(self.units, 1), initializer="glorot_uniform")
        super().build(input_shape)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        sequence, query, mask = inputs
        real = tf.cast(mask, tf.bool)
        keys = tf.einsum("btd,du->btu", sequence, self.key_kernel)
        queried = tf.matmul(query, self.query_kernel)[:, tf.newaxis, :]
        scores = tf.squeeze(tf.tanh(keys + queried + self.bias) @ self.score_vector, axis=-1)
        scores = tf.where(real, scores, tf.fill(tf.shape(scores), tf.constant(_NEGATIVE, scores.dtype)))
        weights = tf.nn.softmax(scores, axis=-1) * tf.cast(real, scores.dtype)
        # Renormalise so an all-padding row gives zeros (softmax alone would spread it uniformly).
        weights = tf.math.divide_no_nan(weights, tf.reduce_sum(weights, axis=-1, keepdims=True))
        pooled = tf.einsum("bt,btd->bd", weights, sequence)
        return (pooled, weights) if self.return_weights else pooled

    def compute_output_shape(self, input_shape: list[tf.TensorShape]) -> Any:
        sequence_shape = tf.TensorShape(input_shape[0])
        pooled = tf.TensorShape([sequence_shape[0], sequence_shape[-1]])
        return (pooled, tf.TensorShape(sequence_shape[:2])) if self.return_weights else pooled

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "return_weights": self.return_weights}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class GatedFusion(tf.keras.layers.Layer):
    """Blend the history summary and the current transaction with a learnt, per-unit gate.

    out = g * tanh(W_h h + b_h) + (1 - g) * tanh(W_c c + b_c),  g = sigmoid(W_g [h; c] + b_g).
    Why a gate instead of a concatenation: for a card with no or an uninformative history the gate
    can shut the history branch off per example, and for a burst of card-testing steps open it wide;
    a concatenation would have to learn that switch in the following dense layers.
    Inputs: [history [batch, dh], current [batch, dc]]. Output: [batch, units].
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"GatedFusion needs units >= 1, got {units}")
        self.units = int(units)

    def build(self, input_shape: list[tf.TensorShape]) -> None:
        history_dim = int(tf.TensorShape(input_shape[0])[-1])
        current_dim = int(tf.TensorShape(input_shape[1])[-1])
        self.history_kernel = self.add_weight(
            name="history_kernel", shape=(history_dim, self.units), initializer="glorot_uniform")
        self.history_bias = self.add_weight(name="history_bias", shape=(self.units,), initializer="zeros")
        self.current_kernel = self.add_weight(
            name="current_kernel", shape=(current_dim, self.units), initializer="glorot_uniform")
        self.current_bias = self.add_weight(name="current_bias", shape=(self.units,), initializer="zeros")
        self.gate_kernel = self.add_weight(
            name="gate_kernel", shape=(history_dim + current_dim, self.units), initializer="glorot_uniform")
        self.gate_bias = self.add_weight(name="gate_bias", shape=(self.units,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        history, current = inputs
        gate = tf.sigmoid(tf.concat([history, current], axis=-1) @ self.gate_kernel + self.gate_bias)
        from_history = tf.tanh(history @ self.history_kernel + self.history_bias)
        from_current = tf.tanh(current @ self.current_kernel + self.current_bias)
        return gate * from_history + (1.0 - gate) * from_current

    def compute_output_shape(self, input_shape: list[tf.TensorShape]) -> tf.TensorShape:
        return tf.TensorShape([tf.TensorShape(input_shape[0])[0], self.units])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class RelativeToCurrent(tf.keras.layers.Layer):
    """Each history step's value seen from the current transaction: (current - step), 0 on padding.

    Why: what betrays a stolen card is often not the amount itself but the amount against the card's
    own habits (a customer who spends 20 suddenly spending 100). Both sides arrive on one scale
    (preprocessing scales a history column with its current column's statistics), so a difference
    of log-scaled values is a log ratio, which the convolution and LSTM then read step by step.
    Inputs: [current [batch, 1], steps [batch, length], mask [batch, length]]. Output: [batch, length].
    """

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        current, steps, mask = inputs
        mask = tf.cast(mask, steps.dtype)
        return (tf.cast(current, steps.dtype) - steps) * mask

    def compute_output_shape(self, input_shape: list[tf.TensorShape]) -> tf.TensorShape:
        return tf.TensorShape(input_shape[1])
