"""Custom layers: config round trips, exact masking, gate behaviour, relative steps, reload without custom_objects."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.fraud.layers import GatedFusion, MaskedAttentionPooling, RelativeToCurrent

BATCH, STEPS, DIM, QUERY = 4, 6, 5, 3


def _inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sequence = rng.normal(size=(BATCH, STEPS, DIM)).astype("float32")
    query = rng.normal(size=(BATCH, QUERY)).astype("float32")
    # real steps first, padding last (as the ExampleGen writes histories); row 3 has no history
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], "float32")
    return sequence, query, mask


def test_attention_config_round_trip_gives_the_same_layer() -> None:
    layer = MaskedAttentionPooling(7, return_weights=True, name="pool")
    sequence, query, mask = _inputs()
    expected = layer([sequence, query, mask])
    clone = MaskedAttentionPooling.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.units == 7 and clone.return_weights and clone.name == "pool"
    clone([sequence, query, mask])
    clone.set_weights(layer.get_weights())
    for got, want in zip(clone([sequence, query, mask]), expected, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_padded_steps_do_not_change_the_output() -> None:
    layer = MaskedAttentionPooling(8, return_weights=True)
    sequence, query, mask = _inputs()
    pooled, weights = layer([sequence, query, mask])
    junk = np.where(mask[..., None] > 0, sequence, 1e3 * np.random.default_rng(9).normal(size=sequence.shape))
    pooled_junk, weights_junk = layer([junk.astype("float32"), query, mask])
    np.testing.assert_array_equal(pooled.numpy(), pooled_junk.numpy())
    np.testing.assert_array_equal(weights.numpy(), weights_junk.numpy())
    assert np.all(weights.numpy()[mask == 0] == 0.0)
    np.testing.assert_allclose(weights.numpy()[:3].sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(pooled.numpy()[2], sequence[2, 0], rtol=1e-6)  # one real step: itself


def test_no_history_pools_to_zeros_not_nan() -> None:
    pooled = MaskedAttentionPooling(4)(list(_inputs()))
    assert np.all(np.isfinite(pooled.numpy()))
    assert np.all(pooled.numpy()[3] == 0.0)


def test_attention_depends_on_the_query() -> None:
    layer = MaskedAttentionPooling(8, return_weights=True)
    sequence, query, mask = _inputs()
    _, weights = layer([sequence, query, mask])
    _, other = layer([sequence, -5.0 * query, mask])
    assert not np.allclose(weights.numpy()[0], other.numpy()[0])


def test_attention_refuses_wrong_ranks() -> None:
    sequence, query, mask = _inputs()
    with pytest.raises(ValueError, match="MaskedAttentionPooling takes"):
        MaskedAttentionPooling(4)([sequence[:, 0], query, mask])


def test_gated_fusion_round_trip_and_gate_extremes() -> None:
    rng = np.random.default_rng(1)
    history, current = rng.normal(size=(BATCH, 6)).astype("float32"), rng.normal(size=(BATCH, 4)).astype("float32")
    layer = GatedFusion(5, name="fusion")
    out = layer([history, current]).numpy()
    assert out.shape == (BATCH, 5) and np.all(np.abs(out) < 1.0)
    clone = GatedFusion.from_config(layer.get_config())
    clone([history, current])
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone([history, current]).numpy(), out)

    from_history = np.tanh(history @ layer.history_kernel.numpy() + layer.history_bias.numpy())
    from_current = np.tanh(current @ layer.current_kernel.numpy() + layer.current_bias.numpy())
    layer.gate_bias.assign(np.full(5, 50.0, "float32"))   # gate open: history only
    np.testing.assert_allclose(layer([history, current]).numpy(), from_history, atol=1e-5)
    layer.gate_bias.assign(np.full(5, -50.0, "float32"))  # gate shut: current transaction only
    np.testing.assert_allclose(layer([history, current]).numpy(), from_current, atol=1e-5)


def test_relative_steps_are_current_minus_step_and_zero_on_padding() -> None:
    _, _, mask = _inputs()
    current = np.array([[2.0], [0.5], [-1.0], [3.0]], "float32")
    steps = np.random.default_rng(2).normal(size=(BATCH, STEPS)).astype("float32")
    out = RelativeToCurrent()([current, steps, mask]).numpy()
    np.testing.assert_allclose(out, (current - steps) * mask, rtol=1e-6)
    assert np.all(out[mask == 0] == 0.0) and np.all(out[3] == 0.0)  # no history: all zero
    assert out[0, 0] == pytest.approx(2.0 - steps[0, 0])


def test_model_with_the_custom_layers_reloads_without_custom_objects(tmp_path: Path) -> None:
    sequence_in = tf.keras.Input((STEPS, DIM))
    query_in, mask_in = tf.keras.Input((QUERY,)), tf.keras.Input((STEPS,))
    relative = RelativeToCurrent()([query_in[:, :1], sequence_in[:, :, 0], mask_in])
    sequence = tf.keras.layers.Concatenate()([sequence_in, tf.keras.layers.Reshape((STEPS, 1))(relative)])
    pooled = MaskedAttentionPooling(6)([sequence, query_in, mask_in])
    output = tf.keras.layers.Dense(1)(GatedFusion(4)([pooled, query_in]))
    model = tf.keras.Model([sequence_in, query_in, mask_in], output)
    inputs = list(_inputs())
    path = tmp_path / "model"
    model.save(path, save_format="tf")
    reloaded = tf.keras.models.load_model(path)  # registered: no custom_objects needed
    assert {type(layer).__name__ for layer in reloaded.layers} >= {
        "MaskedAttentionPooling", "GatedFusion", "RelativeToCurrent"}
    np.testing.assert_allclose(reloaded(inputs).numpy(), model(inputs).numpy(), rtol=1e-6)
