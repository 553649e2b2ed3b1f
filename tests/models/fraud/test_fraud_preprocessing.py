"""preprocessing_fn under a real tft_beam run: scales, shared vocabulary and scale for history, time
features, fixed amount bands, padding zeroed, label passed through."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from fraud_helpers import LENGTH, MONDAY_2024_01_01, TransformRun, raw_feature_spec, serialize

from models.fraud.features import AMOUNT_BAND_EDGES
from models.fraud.preprocessing import amount_band, hour_and_weekday


def transform(run: TransformRun, rows: list[dict]) -> dict[str, np.ndarray]:
    output = tft.TFTransformOutput(run.transform_dir)
    parsed = tf.io.parse_example([serialize(row) for row in rows], raw_feature_spec())
    return {name: value.numpy() for name, value in output.transform_features_layer()(parsed).items()}


def test_current_amount_is_log_z_scored_over_the_train_split(transform_run: TransformRun) -> None:
    out = transform(transform_run, transform_run.train_rows)
    scaled = out["amount_xf"]
    assert scaled.shape == (len(transform_run.train_rows),)
    assert abs(scaled.mean()) < 1e-4 and abs(scaled.std() - 1.0) < 1e-3
    raw = np.log1p([row["amount"][0] for row in transform_run.train_rows])
    np.testing.assert_allclose(scaled, (raw - raw.mean()) / raw.std(), rtol=1e-3, atol=1e-4)


def test_history_amount_shares_the_current_scale_and_padding_is_zero(transform_run: TransformRun) -> None:
    row = dict(transform_run.train_rows[0])
    row.update({"amount": [123.0], "history_amount": [123.0, 5.0] + [0.0] * (LENGTH - 2),
                "history_mask": [1, 1] + [0] * (LENGTH - 2), "history_count": [2],
                "history_seconds_since": [60.0, 3600.0] + [0.0] * (LENGTH - 2)})
    out = transform(transform_run, [row])
    history = out["history_amount_xf"][0]
    assert history.shape == (LENGTH,)
    assert history[0] == pytest.approx(out["amount_xf"][0], abs=1e-5)  # same amount, same scaled value
    assert history[1] < history[0]
    assert np.all(history[2:] == 0.0) and np.all(out["history_seconds_since_xf"][0][2:] == 0.0)
    assert out["history_seconds_since_xf"][0][0] < out["history_seconds_since_xf"][0][1]
    assert out["history_mask_xf"].dtype == np.int64 and list(out["history_mask_xf"][0]) == [1, 1, 0, 0, 0]
    assert out["history_count_xf"][0] == pytest.approx(2 / LENGTH)


def test_history_categories_use_the_current_vocabulary(transform_run: TransformRun) -> None:
    row = dict(transform_run.train_rows[0])
    row.update({"merchant_category": [b"travel"],
                "history_merchant_category": [b"travel", b"grocery"] + [b""] * (LENGTH - 2),
                "history_mask": [1, 1] + [0] * (LENGTH - 2)})
    out = transform(transform_run, [row])
    output = tft.TFTransformOutput(transform_run.transform_dir)
    vocabulary = output.vocabulary_by_name("merchant_category_vocab")
    ids = out["history_merchant_category_xf"][0]
    assert ids[0] == out["merchant_category_xf"][0] == vocabulary.index(b"travel")
    assert ids[1] == vocabulary.index(b"grocery")
    assert list(ids[2:]) == [0] * (LENGTH - 2)


def test_time_bands_and_label(transform_run: TransformRun) -> None:
    rows = []
    # Saturday 2024-01-06 13:30 UTC; Monday 00:00; Sunday 23:59:59
    for seconds, amount in ((5 * 86_400 + 13 * 3600 + 1800, 9.99), (0, 10.0), (7 * 86_400 - 1, 2500.0)):
        row = dict(transform_run.train_rows[0])
        row.update({"timestamp": [MONDAY_2024_01_01 + seconds], "amount": [amount]})
        rows.append(row)
    out = transform(transform_run, rows)
    assert list(out["hour_of_day_xf"]) == [13, 0, 23]
    assert list(out["day_of_week_xf"]) == [5, 0, 6]
    assert list(out["amount_band"]) == [0, 1, len(AMOUNT_BAND_EDGES)]
    assert out["amount_band"].dtype == np.int64
    assert out["is_fraud"].dtype == np.int64
    assert list(out["is_fraud"]) == [transform_run.train_rows[0]["is_fraud"][0]] * 3


def test_amount_band_edges_and_time_helpers_directly() -> None:
    bands = amount_band(tf.constant([0.0, 9.99, 10.0, 49.99, 50.0, 999.0, 1000.0, 2499.0, 2500.0, 1e6]))
    assert bands.numpy().tolist() == [0, 0, 1, 1, 2, 5, 6, 6, 7, 7]
    hour, weekday = hour_and_weekday(tf.constant([0, MONDAY_2024_01_01 - 1], tf.int64))
    assert hour.numpy().tolist() == [0, 23]          # 1970-01-01 00:00; Sunday 2023-12-31 23:59:59
    assert weekday.numpy().tolist() == [3, 6]        # Thursday; Sunday
