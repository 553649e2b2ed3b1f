"""DP-SGD is checked against its definition, on 1 and on 2 replicas, for every clipping method.

One SGD(lr=1) step must move the weights by exactly -(sum_i clip_C(g_i) + noise) / B, where the
g_i are per-example gradients computed here one example at a time.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tensorflow as tf
from pydantic import ValidationError

from models.common.dp import DPConfigError, compile_dp_model, replica_parameters
from models.common.settings import CLIPPING_METHODS, DPSettings, describe_validation_error

METHODS = ("fast", "vectorized", "vectorized-no-xla", "microbatch")


def _dp_config(clip: float, noise_multiplier: float, method: str) -> DPSettings:
    """``vectorized-no-xla``: the vectorized method without compiling its per-example gradients."""
    return DPSettings(l2_norm_clip=clip, noise_multiplier=noise_multiplier, clipping=method.removesuffix("-no-xla"),
                      jit_compile=not method.endswith("-no-xla"))
BATCH = 8


def _build(input_dim: int, hidden: int, seed: int = 0) -> tf.keras.Model:
    inputs = tf.keras.Input(shape=(input_dim,), name="x")
    hidden_out = tf.keras.layers.Dense(hidden, activation="tanh", name="hidden")(inputs)
    logits = tf.keras.layers.Dense(1, name="logit")(hidden_out)
    model = tf.keras.Model(inputs, logits)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


def _data(input_dim: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (BATCH, input_dim)).astype("float32")
    # Scale examples differently so their gradient norms spread on both sides of the clip norm.
    x *= np.linspace(0.2, 3.0, BATCH, dtype="float32")[:, None]
    y = (rng.random((BATCH, 1)) > 0.5).astype("float32")
    return x, y


def _per_example_grads(model: tf.keras.Model, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    # One example per call, so a summed loss is the example's loss (and is allowed in a strategy).
    loss_fn = tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction="sum")
    grads = []
    for i in range(len(x)):
        with tf.GradientTape() as tape:
            loss = loss_fn(y[i : i + 1], model(x[i : i + 1]))
        g = tape.gradient(loss, model.trainable_variables)
        grads.append(np.concatenate([t.numpy().ravel() for t in g]))
    return grads


def _clipped_sum(grads: list[np.ndarray], clip: float) -> np.ndarray:
    return sum(g * min(1.0, clip / np.linalg.norm(g)) for g in grads)


def _one_step(
    config: DPSettings, strategy: tf.distribute.Strategy, replicas: int, input_dim: int, hidden: int
):
    """Weights before, after one DP-SGD step, and the per-example gradients at the start."""
    x, y = _data(input_dim)
    reference = _build(input_dim, hidden)  # same weights, outside any strategy
    before = np.concatenate([w.ravel() for w in reference.get_weights()])
    grads = _per_example_grads(reference, x, y)
    with strategy.scope():
        model = _build(input_dim, hidden)
        dp_model = compile_dp_model(
            model,
            config,
            optimizer=tf.keras.optimizers.SGD(learning_rate=1.0),
            loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
        )
        assert strategy.num_replicas_in_sync == replicas
    dp_model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    after = np.concatenate([w.ravel() for w in dp_model.get_weights()])
    return before, after, grads


def _strategy(replicas: int, mirrored: tf.distribute.Strategy) -> tf.distribute.Strategy:
    return mirrored if replicas > 1 else tf.distribute.get_strategy()


@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.parametrize("method", METHODS)
def test_noise_free_step_is_mean_of_clipped_per_example_gradients(
    method: str, replicas: int, mirrored: tf.distribute.Strategy
) -> None:
    tf.keras.utils.set_random_seed(0)
    x, y = _data(5)
    norms = [np.linalg.norm(g) for g in _per_example_grads(_build(5, 4), x, y)]
    clip = float(np.median(norms))
    assert min(norms) < clip < max(norms)  # some examples are clipped, some are not

    before, after, grads = _one_step(_dp_config(clip, 0.0, method), _strategy(replicas, mirrored), replicas, 5, 4)

    expected = -_clipped_sum(grads, clip) / BATCH
    np.testing.assert_allclose(after - before, expected, rtol=1e-4, atol=1e-6)
    # The unclipped mean differs, so the comparison above really tests the clipping.
    assert np.abs(-sum(grads) / BATCH - expected).max() > 1e-3


@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.parametrize("method", METHODS)
def test_noise_std_is_noise_multiplier_times_clip_over_batch(
    method: str, replicas: int, mirrored: tf.distribute.Strategy
) -> None:
    """The residual after removing the exact clipped mean is the noise / B, one draw per weight.

    64×64 + 64 + 64 + 1 = 4225 weights give a sample standard deviation with relative standard error
    1/sqrt(2·4225) ≈ 1.1%; the 5% tolerance is more than 4 standard errors. A wrong replica
    scaling is off by ≥ 41% (√2), so the test separates right from wrong by a wide margin.
    """
    tf.keras.utils.set_random_seed(1)
    clip, noise_multiplier = 0.05, 1.0
    before, after, grads = _one_step(
        _dp_config(clip, noise_multiplier, method), _strategy(replicas, mirrored), replicas, 64, 64
    )

    residual = (after - before) + _clipped_sum(grads, clip) / BATCH
    expected_std = noise_multiplier * clip / BATCH
    assert residual.size == 4225
    assert abs(residual.std() / expected_std - 1) < 0.05, (residual.std(), expected_std)
    assert abs(residual.mean()) < 4 * expected_std / math.sqrt(residual.size)


def test_replica_parameters_are_identity_on_one_replica() -> None:
    for method in CLIPPING_METHODS:
        params = replica_parameters(DPSettings(l2_norm_clip=1.5, noise_multiplier=1.1, clipping=method), 1)
        assert (params.l2_norm_clip, params.noise_multiplier) == (1.5, 1.1)


def test_microbatches_must_split_over_replicas() -> None:
    config = DPSettings(l2_norm_clip=1.0, noise_multiplier=1.0, clipping="microbatch", num_microbatches=6)
    assert replica_parameters(config, 2).num_microbatches == 3
    with pytest.raises(DPConfigError, match="multiple of the 4 replicas"):
        replica_parameters(config, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"l2_norm_clip": 0.0, "noise_multiplier": 1.0}, r"l2_norm_clip: Input should be greater than 0"),
        ({"l2_norm_clip": math.inf, "noise_multiplier": 1.0}, r"l2_norm_clip: Input should be a finite number"),
        ({"l2_norm_clip": 1.0, "noise_multiplier": -1.0},
         r"noise_multiplier: Input should be greater than or equal to 0"),
        ({"l2_norm_clip": 1.0, "noise_multiplier": 1.0, "clipping": "ghost"}, r"clipping: .*'fast', 'vectorized' or"),
        (
            {"l2_norm_clip": 1.0, "noise_multiplier": 1.0, "num_microbatches": 4},
            "only used by clipping='microbatch'",
        ),
    ],
)
def test_bad_config_names_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError) as error:
        DPSettings(**kwargs)
    assert re.search(message, describe_validation_error(error.value, DPSettings))


def test_fast_clipping_refuses_layers_outside_the_registry() -> None:
    inputs = tf.keras.Input(shape=(3,))
    normalized = tf.keras.layers.LayerNormalization(name="norm")(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(normalized))
    with pytest.raises(DPConfigError, match=r"norm \(LayerNormalization\).*clipping='vectorized'"):
        compile_dp_model(
            model,
            DPSettings(l2_norm_clip=1.0, noise_multiplier=1.0, clipping="fast"),
            optimizer=tf.keras.optimizers.SGD(),
            loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
        )


def test_microbatch_model_reloads_with_include_optimizer_false(tmp_path) -> None:
    """TFMA loads models with load_model; the DP optimizer class must not be in the SavedModel."""
    model = compile_dp_model(
        _build(5, 4),
        DPSettings(l2_norm_clip=1.0, noise_multiplier=1.0, clipping="microbatch"),
        optimizer=tf.keras.optimizers.Adam(1e-3),
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
    )
    x, y = _data(5)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    model.save(tmp_path / "m", include_optimizer=False)
    reloaded = tf.keras.models.load_model(tmp_path / "m")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_dict_inputs_as_in_a_tfx_run_fn(method: str) -> None:
    """Transformed features arrive as a dict of named tensors; every method must accept it."""
    inputs = {name: tf.keras.Input(shape=(1,), name=name) for name in ("amount", "hour")}
    joined = tf.keras.layers.Concatenate()([inputs["amount"], inputs["hour"]])
    hidden = tf.keras.layers.Dense(4, activation="relu")(joined)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(hidden))
    dp_model = compile_dp_model(
        model,
        _dp_config(1.0, 1.0, method),
        optimizer=tf.keras.optimizers.Adam(1e-2),
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[tf.keras.metrics.AUC(name="auc")],
    )
    if method == "fast":
        assert dp_model._enable_fast_peg_computation  # not silently the slow path
    rng = np.random.default_rng(0)
    features = {name: rng.normal(size=(64, 1)).astype("float32") for name in inputs}
    labels = (features["amount"] > 0).astype("float32")
    history = dp_model.fit(features, labels, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and "auc" in history.history
