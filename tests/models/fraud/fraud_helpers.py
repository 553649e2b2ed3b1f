"""Synthetic transactions shaped like the AnonymizingExampleGen's output, for the fraud-model tests."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

LENGTH = 5
LABEL = "is_fraud"
CATEGORIES = ["grocery", "restaurant", "electronics", "digital_goods", "travel"]
CHANNELS = ["card_present", "online"]
MONDAY_2024_01_01 = 1_704_067_200  # 2024-01-01T00:00:00Z, a Monday

FEATURES = {"amount": "float", "merchant_category": "string", "channel": "string",
            "distance_from_home_km": "float", "age_band": "string", "timestamp": "int"}
HISTORY = {"history_amount": "float", "history_merchant_category": "string",
           "history_distance_from_home_km": "float", "history_seconds_since": "float",
           "history_mask": "int", "history_count": "int"}


def custom_config(**options: Any) -> dict[str, Any]:
    """custom_config as the pipeline builds it (pipeline/dag.py: trainer_custom_config)."""
    return {"data": {"label": LABEL, "features": dict(FEATURES)},
            "sequence": {"length": LENGTH, "prefix": "history_", "features": dict(HISTORY)},
            "model": {"hidden_units": [16, 8], "dropout": 0.1, "learning_rate": 0.01, "batch_size": 16,
                      "options": {"embedding_dim": 4, "conv_filters": 8, "lstm_units": 8, "attention_units": 8,
                                  "fusion_units": 8, **options}},
            "training": {"epochs": 2, "seed": 7, "distribution": {"strategy": "none", "num_replicas": 1},
                         "dp": {"enabled": False}, "backup_root": None, "debug_numerics": False,
                         "histogram_freq": 0}}


def raw_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """What SchemaGen (infer_feature_shape=True) gives: scalars [1], histories [LENGTH], plus unused columns."""
    dtype = {"float": tf.float32, "int": tf.int64, "string": tf.string}
    spec = {name: tf.io.FixedLenFeature([1], dtype[kind]) for name, kind in FEATURES.items()}
    spec.update({name: tf.io.FixedLenFeature([LENGTH], dtype[kind]) for name, kind in HISTORY.items()
                 if name != "history_count"})
    spec["history_count"] = tf.io.FixedLenFeature([1], tf.int64)
    spec["card_id"] = tf.io.FixedLenFeature([1], tf.string)  # in the data, not used by the model
    spec[LABEL] = tf.io.FixedLenFeature([1], tf.int64)
    return spec


def raw_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Transactions with padded histories; frauds are large, far from home and follow a burst."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        fraud = int(rng.random() < 0.25)
        count = int(rng.integers(0, LENGTH + 1))
        amount = float(np.exp(rng.normal(7.0 if fraud else 4.0, 0.6)))
        history_amount = [float(np.exp(rng.normal(1.0 if fraud else 4.0, 0.5))) for _ in range(count)]
        gaps = np.cumsum(rng.uniform(10, 120 if fraud else 20_000, size=count)).tolist()
        pad = LENGTH - count
        rows.append({
            "amount": [amount],
            "merchant_category": [CATEGORIES[int(rng.integers(len(CATEGORIES)))].encode()],
            "channel": [CHANNELS[fraud if rng.random() < 0.8 else 1 - fraud].encode()],
            "distance_from_home_km": [float(rng.exponential(800.0 if fraud else 8.0))],
            "age_band": [["18-24", "25-34", "35-44"][i % 3].encode()],
            "timestamp": [MONDAY_2024_01_01 + int(rng.integers(0, 7 * 86_400))],
            "history_amount": history_amount + [0.0] * pad,
            "history_merchant_category": [CATEGORIES[int(rng.integers(len(CATEGORIES)))].encode()
                                          for _ in range(count)] + [b""] * pad,
            "history_distance_from_home_km": [float(rng.exponential(10.0)) for _ in range(count)] + [0.0] * pad,
            "history_seconds_since": [float(g) for g in gaps] + [0.0] * pad,
            "history_mask": [1] * count + [0] * pad,
            "history_count": [count],
            "card_id": [f"card-{i % 11}".encode()],
            LABEL: [fraud],
        })
    return rows


def serialize(row: dict[str, Any], with_label: bool = True) -> bytes:
    """A raw row as the serialized tf.Example the Evaluator and TF Serving clients send."""
    features = {}
    for name, values in row.items():
        if name == LABEL and not with_label:
            continue
        if isinstance(values[0], bytes):
            feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        elif isinstance(values[0], int):
            feature = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        features[name] = feature
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


@dataclass(frozen=True)
class TransformRun:
    transform_dir: str
    train_files: list[str]
    eval_files: list[str]
    train_rows: list[dict[str, Any]]
    eval_rows: list[dict[str, Any]]
