"""The non-finite guard stops provoked divergence at the first bad batch; the logger feeds TensorBoard."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import tensorflow as tf

from models.common.callbacks import (
    LearningRateAndEpsilonLogger,
    NonFiniteGuard,
    NonFiniteTrainingError,
)
from models.common.privacy_accounting import compute_epsilon

BATCH, STEPS_PER_EPOCH = 8, 4


class Recorder(tf.keras.callbacks.Callback):
    """Runs before the guard: what every batch produced, as (epoch, batch, all finite)."""

    def on_train_begin(self, logs=None):
        self.batches: list[tuple[int, int, bool]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        finite = math.isfinite(logs["loss"]) and all(
            np.isfinite(w).all() for w in self.model.get_weights()
        )
        self.batches.append((self.epoch + 1, batch + 1, finite))


def _model(learning_rate: float) -> tf.keras.Model:
    inputs = tf.keras.Input(shape=(4,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, name="out")(inputs))
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate), loss="mse")
    return model


def _data(poison_batch: int | None = None) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * STEPS_PER_EPOCH * 3, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True) * 10
    if poison_batch is not None:
        x[poison_batch * BATCH + 3, 1] = np.inf
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def test_poisoned_batch_stops_training_at_its_epoch_and_batch() -> None:
    tf.keras.utils.set_random_seed(0)
    recorder = Recorder()
    # Global batch 6 (0-based) is the third batch of the second epoch.
    with pytest.raises(NonFiniteTrainingError) as raised:
        _model(0.01).fit(
            _data(poison_batch=6), epochs=3, steps_per_epoch=STEPS_PER_EPOCH,
            callbacks=[recorder, NonFiniteGuard()], verbose=0,
        )
    error = raised.value
    assert (error.epoch, error.batch, error.tensor) == (2, 3, "loss")
    assert "at epoch 2, batch 3" in str(error)
    assert recorder.batches[-1] == (2, 3, False)  # nothing ran after the bad batch
    assert all(finite for *_, finite in recorder.batches[:-1])


def test_exploding_learning_rate_stops_at_the_first_non_finite_value() -> None:
    tf.keras.utils.set_random_seed(0)
    recorder = Recorder()
    with pytest.raises(NonFiniteTrainingError) as raised:
        _model(1e4).fit(
            _data(), epochs=3, steps_per_epoch=STEPS_PER_EPOCH,
            callbacks=[recorder, NonFiniteGuard()], verbose=0,
        )
    error = raised.value
    assert recorder.batches[-1] == (error.epoch, error.batch, False)
    assert all(finite for *_, finite in recorder.batches[:-1])
    assert error.tensor == "loss" or error.tensor.startswith("weight 'out/")
    assert f"epoch {error.epoch}, batch {error.batch}" in str(error)


def test_a_non_finite_weight_is_named() -> None:
    model = _model(0.01)

    class PoisonWeight(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                bias = self.model.get_layer("out").bias
                bias.assign(tf.fill(bias.shape, np.nan))

    with pytest.raises(NonFiniteTrainingError, match=r"Non-finite weight 'out/bias:0' at epoch 1, batch 2"):
        model.fit(_data(), epochs=1, steps_per_epoch=STEPS_PER_EPOCH,
                  callbacks=[PoisonWeight(), NonFiniteGuard()], verbose=0)


def test_weights_checked_once_per_epoch_report_its_last_batch() -> None:
    class PoisonAtEpochEnd(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            bias = self.model.get_layer("out").bias
            bias.assign(tf.fill(bias.shape, np.inf))

    with pytest.raises(NonFiniteTrainingError, match=r"weight 'out/bias:0' at epoch 1, batch 4 "):
        _model(0.01).fit(_data(), epochs=2, steps_per_epoch=STEPS_PER_EPOCH, verbose=0,
                         callbacks=[PoisonAtEpochEnd(), NonFiniteGuard(weights_every=0)])


def test_guard_works_under_two_replicas(mirrored) -> None:
    with mirrored.scope():
        model = _model(0.01)
    with pytest.raises(NonFiniteTrainingError) as raised:
        model.fit(_data(poison_batch=2), epochs=1, steps_per_epoch=STEPS_PER_EPOCH,
                  callbacks=[NonFiniteGuard()], verbose=0)
    assert (raised.value.epoch, raised.value.batch, raised.value.tensor) == (1, 3, "loss")


def test_healthy_training_is_left_alone() -> None:
    history = _model(0.01).fit(_data(), epochs=2, steps_per_epoch=STEPS_PER_EPOCH,
                               callbacks=[NonFiniteGuard()], verbose=0)
    assert history.epoch == [0, 1]


@pytest.mark.parametrize(
    "optimizer", [tf.keras.optimizers.SGD, tf.keras.optimizers.legacy.SGD], ids=["new", "legacy"]
)
def test_learning_rate_and_epsilon_reach_history_and_tensorboard(tmp_path, optimizer) -> None:
    """A halving schedule: the rate in effect after epoch 1 (step 4) and epoch 2 (step 8)."""
    schedule = tf.keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    model = _model(0.01)
    model.compile(optimizer=optimizer(schedule), loss="mse")
    epsilon_fn = functools.partial(
        compute_epsilon, sampling_probability=0.01, noise_multiplier=1.0, delta=1e-5
    )
    history = model.fit(
        _data(), epochs=2, steps_per_epoch=STEPS_PER_EPOCH, verbose=0,
        callbacks=[LearningRateAndEpsilonLogger(epsilon_fn), tf.keras.callbacks.TensorBoard(tmp_path)],
    )
    assert history.history["learning_rate"] == pytest.approx([0.1 * 0.5**4, 0.1 * 0.5**8])
    assert history.history["epsilon"] == [epsilon_fn(steps=4), epsilon_fn(steps=8)]

    logged: dict[str, list[float]] = {}
    for event_file in (tmp_path / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                if not value.tag.startswith("epoch_"):
                    continue  # the model config and graph summaries
                logged.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    assert logged["epoch_epsilon"] == pytest.approx(history.history["epsilon"])
    assert logged["epoch_learning_rate"] == pytest.approx(history.history["learning_rate"])
