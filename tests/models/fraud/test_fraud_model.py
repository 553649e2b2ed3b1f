"""The fraud network on synthetic tensors: builds, learns, ignores padding; settings errors name the key."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from fraud_helpers import LENGTH, custom_config

from models.common.dp import compile_dp_model
from models.common.settings import DPSettings
from models.fraud.features import FraudConfigError, FraudSettings
from models.fraud.model import (
    build_model,
    class_weight,
    current_inputs,
    make_loss,
    make_metrics,
    sequence_inputs,
    served_probability,
    vocabularies,
)

SIZES = {"merchant_category_vocab": 5, "channel_vocab": 2, "age_band_vocab": 3}


def synthetic_inputs(settings: FraudSettings, n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Model inputs (already 'transformed') whose label follows the amount and a history burst."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.2).astype("float32")
    count = rng.integers(0, LENGTH + 1, size=n)
    mask = (np.arange(LENGTH)[None, :] < count[:, None]).astype("float32")
    inputs: dict[str, np.ndarray] = {}
    for name, dtype in current_inputs(settings).items():
        if dtype == tf.int64:
            high = {"hour_of_day_xf": 24, "day_of_week_xf": 7}.get(name, 3)
            inputs[name] = rng.integers(0, high, size=(n, 1))
        else:
            inputs[name] = rng.normal(size=(n, 1)).astype("float32")
    inputs["amount_xf"] = (rng.normal(size=(n, 1)) + 2.0 * label[:, None]).astype("float32")
    inputs["history_count_xf"] = (count / LENGTH).astype("float32")[:, None]
    for name, dtype in sequence_inputs(settings).items():
        if dtype == tf.int64:
            inputs[name] = (rng.integers(1, 5, size=(n, LENGTH)) * mask).astype("int64")
        else:
            inputs[name] = (rng.normal(size=(n, LENGTH)) * mask).astype("float32")
    inputs["history_amount_xf"] = ((rng.normal(size=(n, LENGTH)) - 1.5 * label[:, None]) * mask).astype("float32")
    inputs["history_mask_xf"] = mask
    return inputs, label[:, None]


def test_model_builds_with_the_configured_branches_and_custom_layers() -> None:
    settings = FraudSettings.from_custom_config(custom_config())
    model = build_model(settings, SIZES)
    names = {layer.name for layer in model.layers}
    assert {"history_conv", "history_lstm", "history_attention", "fusion", "probability"} <= names
    assert model.get_layer("history_conv").padding == "causal"
    assert set(model.input_names) == set(current_inputs(settings)) | set(sequence_inputs(settings))
    assert model.output_shape == (None, 1)
    # one embedding for the current and the history merchant category
    assert vocabularies(settings) == ["merchant_category_vocab", "channel_vocab", "age_band_vocab"]


@pytest.mark.parametrize("loss", ["focal", "weighted_bce"])
def test_model_trains_a_few_steps_and_loss_falls(loss: str) -> None:
    settings = FraudSettings.from_custom_config(custom_config(loss=loss))
    tf.keras.utils.set_random_seed(settings.training.seed)
    model = build_model(settings, SIZES)
    model.compile(tf.keras.optimizers.Adam(settings.model.learning_rate), loss=make_loss(settings),
                  metrics=make_metrics())
    inputs, label = synthetic_inputs(settings, 512, seed=3)
    before = model.evaluate(inputs, label, verbose=0, return_dict=True)
    model.fit(inputs, label, batch_size=64, epochs=4, verbose=0, class_weight=class_weight(settings))
    after = model.evaluate(inputs, label, verbose=0, return_dict=True)
    assert np.isfinite(after["loss"]) and after["loss"] < before["loss"]
    assert after["auc"] > 0.8  # the synthetic label is learnable from amount and history
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_unrolled_and_looped_history_lstm_compute_the_same_function() -> None:
    unrolled = build_model(FraudSettings.from_custom_config(custom_config(lstm_unroll=True)), SIZES)
    looped = build_model(FraudSettings.from_custom_config(custom_config(lstm_unroll=False)), SIZES)
    looped.set_weights(unrolled.get_weights())
    inputs, _ = synthetic_inputs(FraudSettings.from_custom_config(custom_config()), 64, seed=5)
    np.testing.assert_allclose(unrolled(inputs).numpy(), looped(inputs).numpy(), atol=1e-6)


@pytest.mark.parametrize("replicas", [1, 2])
def test_dp_vectorized_trains_the_fraud_model_under_one_and_two_replicas(
        replicas: int, mirrored: tf.distribute.Strategy) -> None:
    """Per-example gradients through Conv1D, the unrolled LSTM and the custom layers, compiled with XLA."""
    settings = FraudSettings.from_custom_config(custom_config())
    tf.keras.utils.set_random_seed(settings.training.seed)
    strategy = mirrored if replicas > 1 else tf.distribute.get_strategy()
    with strategy.scope():
        model = build_model(settings, SIZES)
        before = [w.copy() for w in model.get_weights()]
        dp_model = compile_dp_model(model, DPSettings(l2_norm_clip=1.0, noise_multiplier=0.5, clipping="vectorized"),
                                    optimizer=tf.keras.optimizers.Adam(0.01), loss=make_loss(settings))
    inputs, label = synthetic_inputs(settings, 256, seed=3)
    history = dp_model.fit(inputs, label, batch_size=64, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    after = model.get_weights()  # the exported model shares the DP model's weights
    assert all(np.all(np.isfinite(w)) for w in after)
    assert all(not np.array_equal(b, a) for b, a in zip(before, after, strict=True) if b.size > 1)


def test_relative_history_adds_one_step_feature_per_numeric_history_column() -> None:
    settings = FraudSettings.from_custom_config(custom_config(relative_history=True))
    model = build_model(settings, SIZES)
    relative = sorted(layer.name for layer in model.layers if type(layer).__name__ == "RelativeToCurrent")
    # numeric history columns with a current column; the string category has no difference
    assert relative == ["relative_history_amount", "relative_history_distance_from_home_km"]
    plain = build_model(FraudSettings.from_custom_config(custom_config()), SIZES)
    assert model.get_layer("step_features").output_shape[-1] == plain.get_layer("step_features").output_shape[-1] + 2
    # the current amount now reaches the history branch: moving it alone moves the history encoding
    inputs, _ = synthetic_inputs(settings, 16, seed=6)
    encoder = tf.keras.Model(model.inputs, model.get_layer("step_features").output)
    shifted = {**inputs, "amount_xf": inputs["amount_xf"] + 1.0}
    mask = inputs["history_mask_xf"][..., None]
    difference = (encoder(shifted).numpy() - encoder(inputs).numpy()) * mask
    assert np.abs(difference).max() > 0.5


def test_ensemble_members_have_their_own_weights_and_each_learns_from_its_own_loss() -> None:
    settings = FraudSettings.from_custom_config(custom_config(ensemble_size=2, relative_history=True))
    tf.keras.utils.set_random_seed(settings.training.seed)
    model = build_model(settings, SIZES)
    assert {"history_lstm_0", "history_lstm_1", "fusion_0", "fusion_1"} <= {layer.name for layer in model.layers}
    assert set(model.input_names) == set(current_inputs(settings)) | set(sequence_inputs(settings))
    inputs, label = synthetic_inputs(settings, 256, seed=7)
    members = [tf.keras.Model(model.inputs, model.get_layer(f"probability_{i}").output)(inputs).numpy()
               for i in range(2)]
    assert not np.allclose(members[0], members[1])  # own initial weights
    np.testing.assert_allclose(model(inputs).numpy(), np.concatenate(members, axis=1), rtol=1e-6)
    np.testing.assert_allclose(served_probability(model(inputs)).numpy(), (members[0] + members[1]) / 2, rtol=1e-6)
    # the loss is the members' mean loss: each column against the same label
    loss = make_loss(settings)
    joint = float(loss(label, model(inputs)))
    separate = np.mean([float(loss(label, member)) for member in members])
    assert joint == pytest.approx(separate, rel=1e-5)
    assert make_metrics(settings) == []
    model.compile(tf.keras.optimizers.Adam(0.01), loss=loss, metrics=make_metrics(settings))
    before = model.evaluate(inputs, label, verbose=0)
    model.fit(inputs, label, batch_size=64, epochs=3, verbose=0)
    assert model.evaluate(inputs, label, verbose=0) < before


@pytest.mark.parametrize("relative_history", [False, True])
def test_padded_history_values_do_not_change_predictions(relative_history: bool) -> None:
    """Causal Conv1D + forward LSTM + masked pooling: nothing after the last real step is read."""
    settings = FraudSettings.from_custom_config(custom_config(relative_history=relative_history))
    model = build_model(settings, SIZES)
    inputs, _ = synthetic_inputs(settings, 32, seed=4)
    mask = inputs["history_mask_xf"]
    assert 0 < mask.sum() < mask.size
    junk = dict(inputs)
    rng = np.random.default_rng(5)
    for name, dtype in sequence_inputs(settings).items():
        if name == "history_mask_xf":
            continue
        noise = rng.integers(1, 5, size=mask.shape) if dtype == tf.int64 else 100 * rng.normal(size=mask.shape)
        junk[name] = np.where(mask > 0, inputs[name], noise).astype(inputs[name].dtype)
    np.testing.assert_allclose(model(junk).numpy(), model(inputs).numpy(), rtol=1e-6, atol=1e-7)
    # ... while a real step does matter
    changed = dict(inputs)
    changed["history_amount_xf"] = inputs["history_amount_xf"] + 5.0 * mask
    assert not np.allclose(model(changed).numpy(), model(inputs).numpy())


@pytest.mark.parametrize(("options", "message"), [
    ({"lstm_unit": 8}, r"model\.options\.lstm_unit: unknown key; allowed here: .*lstm_units"),
    ({"loss": "hinge"}, r"model\.options\.loss: Input should be 'focal' or 'weighted_bce' \(got 'hinge'\)"),
    ({"focal_alpha": 1.5}, r"model\.options\.focal_alpha: Input should be less than 1"),
    ({"conv_filters": 0}, r"model\.options\.conv_filters: Input should be greater than or equal to 1"),
    ({"conv_filters": True}, r"model\.options\.conv_filters: Input should be a valid integer"),
    ({"log_features": "amount"}, r"model\.options\.log_features: Input should be a valid list"),
    ({"lstm_unroll": "yes"}, r"model\.options\.lstm_unroll: Input should be a valid boolean"),
])
def test_bad_options_name_the_key(options: dict[str, Any], message: str) -> None:
    config = custom_config()
    config["model"]["options"] = options
    with pytest.raises(FraudConfigError, match=message):
        FraudSettings.from_custom_config(config)


def test_settings_errors_name_the_problem() -> None:
    config = custom_config()
    config["sequence"] = None
    with pytest.raises(FraudConfigError, match="sequence_features"):
        FraudSettings.from_custom_config(config)
    config = custom_config()
    del config["sequence"]["features"]["history_mask"]
    with pytest.raises(FraudConfigError, match="history_mask"):
        FraudSettings.from_custom_config(config)
    config = custom_config()
    del config["data"]["features"]["amount"]
    with pytest.raises(FraudConfigError, match="amount_feature 'amount'"):
        FraudSettings.from_custom_config(config)
    config = custom_config()
    config["data"]["features"]["timestamp"] = "string"
    with pytest.raises(FraudConfigError, match="time_feature 'timestamp'"):
        FraudSettings.from_custom_config(config)


def test_settings_round_trip_through_custom_config() -> None:
    settings = FraudSettings.from_custom_config(custom_config(loss="weighted_bce", positive_weight=20))
    assert FraudSettings.from_custom_config(settings.to_custom_config()) == settings
    assert settings.model.options.positive_weight == 20.0 and class_weight(settings) == {0: 1.0, 1: 20.0}
    assert settings.numeric_features == ["amount", "distance_from_home_km"]  # timestamp is encoded apart
