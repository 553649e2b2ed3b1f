"""Training callbacks: stop at the first non-finite value, and log learning rate and epsilon.

Put them in this order in `fit(callbacks=[...])`: `NonFiniteGuard`, `LearningRateAndEpsilonLogger`,
then `tf.keras.callbacks.TensorBoard`, so that TensorBoard and the `History` see the values the
logger adds. For op-level diagnosis (which op produced the first NaN), additionally call
`tf.debugging.enable_check_numerics()` before building the model; it slows training a lot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from errors import EsteiraError


class NonFiniteTrainingError(EsteiraError, RuntimeError):
    """Training produced NaN or Inf; `epoch` and `batch` are 1-based, as the progress bar counts."""

    def __init__(self, epoch: int, batch: int, tensor: str, value: float | None = None) -> None:
        self.epoch = epoch
        self.batch = batch
        self.tensor = tensor
        self.value = value
        shown = f" ({value})" if value is not None else ""
        super().__init__(
            f"Non-finite {tensor}{shown} at epoch {epoch}, batch {batch} (1-based). Training was "
            "stopped. Usual causes: a learning rate too high, unscaled or corrupt input values "
            "(NaN/Inf in the batch), log(0) in a custom loss. Turn on the debug option "
            "(tf.debugging.enable_check_numerics) to find the op that produced it."
        )


class NonFiniteGuard(tf.keras.callbacks.Callback):
    """Stop training at the first batch whose loss or any weight is NaN or Inf, and raise.

    The loss Keras reports per batch is the running mean over the epoch, so it turns non-finite
    exactly at the first non-finite batch. Weights are checked after the batch's update, every
    `weights_every` batches (1: every batch; 0: only at the end of each epoch).
    """

    def __init__(self, weights_every: int = 1) -> None:
        super().__init__()
        self.weights_every = weights_every
        self._epoch = 0
        self._last_batch = -1
        self._finite: Callable[[], tf.Tensor] | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        variables = self.model.weights

        @tf.function
        def finite() -> tf.Tensor:
            return tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in variables])

        self._variables = variables
        self._finite = finite

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._last_batch = batch
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(batch, "loss", float(loss))
        if self.weights_every and (batch + 1) % self.weights_every == 0:
            self._check_weights(batch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.weights_every:
            self._check_weights(self._last_batch)  # reported as the epoch's last batch

    def _check_weights(self, batch: int) -> None:
        assert self._finite is not None
        finite = self._finite().numpy()
        if not finite.all():
            variable = self._variables[int(np.argmin(finite))]
            self._stop(batch, f"weight '{variable.name}'")

    def _stop(self, batch: int, tensor: str, value: float | None = None) -> None:
        self.model.stop_training = True
        raise NonFiniteTrainingError(self._epoch + 1, batch + 1, tensor, value)


class LearningRateAndEpsilonLogger(tf.keras.callbacks.Callback):
    """Add `learning_rate` and, for DP training, `epsilon` (spent so far) to each epoch's logs.

    Keras hands the same logs to every later callback, so TensorBoard writes them as
    `epoch_learning_rate` / `epoch_epsilon` and `History` keeps them with the other metrics.
    `epsilon_fn` maps the optimizer steps taken so far to epsilon, e.g.
    `functools.partial(privacy_accounting.compute_epsilon, sampling_probability=q,
    noise_multiplier=z, delta=delta)` called as `epsilon_fn(steps=n)`.
    """

    def __init__(self, epsilon_fn: Callable[..., float] | None = None) -> None:
        super().__init__()
        self.epsilon_fn = epsilon_fn

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        optimizer = self.model.optimizer
        logs["learning_rate"] = current_learning_rate(optimizer)
        if self.epsilon_fn is not None:
            logs["epsilon"] = float(self.epsilon_fn(steps=int(optimizer.iterations.numpy())))


def current_learning_rate(optimizer: Any) -> float:
    """The learning rate in effect now (the one the next step uses), old and new Keras 2 optimizers.

    A schedule is evaluated at the optimizer's step counter, as tf.keras's TensorBoard callback
    does when it writes `epoch_learning_rate` itself, so both always write the same value.
    """
    if isinstance(optimizer, tf.keras.optimizers.legacy.Optimizer):
        rate = optimizer.lr  # the legacy optimizers (which the DP optimizers wrap) keep the schedule here
    else:
        rate = getattr(optimizer, "_learning_rate", None) or optimizer.learning_rate
    if isinstance(rate, tf.keras.optimizers.schedules.LearningRateSchedule):
        rate = rate(optimizer.iterations)
    return float(tf.keras.backend.get_value(rate))
