"""A small trained SavedModel shaped like the pipeline's (raw-feature signature with a preprocessing graph
and a vocabulary lookup inside, plus a serialized-Example signature) and its train/eval TFRecords."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

KINDS = (b"online", b"store", b"atm")


@dataclass(frozen=True)
class SmallModel:
    path: Path
    train_files: list[str]
    eval_files: list[str]


def _rows(count: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 50.0, size=count).astype(np.float32)
    hour = rng.integers(0, 24, size=count).astype(np.float32)
    kind = np.array(KINDS, dtype=object)[rng.integers(0, len(KINDS), size=count)]
    logit = 0.02 * (amount - 100.0) + 1.5 * (kind == b"online") - 0.1 * np.abs(hour - 12) + rng.normal(size=count)
    return {"amount": amount, "hour": hour, "kind": kind}, (logit > 0).astype(np.float32)


def _write_examples(path: Path, rows: dict[str, np.ndarray], labels: np.ndarray) -> str:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for index, label in enumerate(labels):
            feature = {
                "amount": tf.train.Feature(float_list=tf.train.FloatList(value=[rows["amount"][index]])),
                "hour": tf.train.Feature(float_list=tf.train.FloatList(value=[rows["hour"][index]])),
                "kind": tf.train.Feature(bytes_list=tf.train.BytesList(value=[rows["kind"][index]])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(path)


def export_small_model(root: Path) -> SmallModel:
    """Train a 2-layer classifier for a few epochs on separable synthetic rows and export it."""
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(7)
    train, train_labels = _rows(600, seed=1)
    evaluation, eval_labels = _rows(300, seed=2)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(KINDS)), tf.constant([0, 1, 2], tf.int64)), -1)

    def preprocess(raw: dict[str, tf.Tensor]) -> tf.Tensor:
        """Stands in for the Transform graph: z-scores and a vocabulary lookup, one-hot."""
        kind = tf.one_hot(table.lookup(raw["kind"]), len(KINDS))
        numeric = tf.stack([(raw["amount"] - 100.0) / 70.0, (raw["hour"] - 12.0) / 7.0], axis=1)
        return tf.concat([numeric, kind], axis=1)

    model = keras.Sequential([keras.layers.Dense(16, activation="relu", input_shape=(5,)),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    model.fit(preprocess({k: tf.constant(v) for k, v in train.items()}).numpy(), train_labels,
              epochs=15, batch_size=64, verbose=0)
    model.table = table

    raw_inputs = {"amount": tf.TensorSpec([None], tf.float32, name="amount"),
                  "hour": tf.TensorSpec([None], tf.float32, name="hour"),
                  "kind": tf.TensorSpec([None], tf.string, name="kind")}

    @tf.function(input_signature=[raw_inputs])
    def serve_raw(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"probability": model(preprocess(features))}

    spec = {"amount": tf.io.FixedLenFeature([], tf.float32), "hour": tf.io.FixedLenFeature([], tf.float32),
            "kind": tf.io.FixedLenFeature([], tf.string)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probability": model(preprocess(tf.io.parse_example(examples, spec)))}

    path = root / "model"
    tf.saved_model.save(model, str(path), signatures={"serving_default": serve_examples, "serving_raw": serve_raw})
    data = root / "data"
    data.mkdir()
    return SmallModel(path, [_write_examples(data / "train.gz", train, train_labels)],
                      [_write_examples(data / "eval.gz", evaluation, eval_labels)])


def export_unconvertible_model(root: Path) -> Path:
    """A raw-feature signature built on ops neither TFLite nor its select TF ops have."""
    import tensorflow as tf

    module = tf.Module()

    @tf.function(input_signature=[{"text": tf.TensorSpec([None], tf.string, name="text")}])
    def serve_raw(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        scripts = tf.strings.unicode_script(tf.strings.unicode_decode(features["text"], "UTF-8").to_tensor())
        return {"probability": tf.cast(tf.reduce_sum(scripts, axis=1, keepdims=True), tf.float32)}

    path = root / "unconvertible"
    tf.saved_model.save(module, str(path), signatures={"serving_raw": serve_raw})
    return path
