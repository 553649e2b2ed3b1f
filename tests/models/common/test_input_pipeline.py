"""The Trainer's input pipeline: full batches, per-epoch reshuffling, seeded order, and a real cache."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.trainer.fn_args_utils import DataAccessor
from tfx_bsl.public import tfxio

from models.common.input_pipeline import AUTOTUNE, make_dataset, tf_data_value
from models.common.settings import InputSettings, SettingsError, TrainerSettings

ROWS, BATCH = 100, 8


def _data_accessor() -> DataAccessor:
    """What the Trainer gives run_fn: TFXIO over TFRecord files of tf.Examples."""
    def factory(files: list[str], options: tfxio.TensorFlowDatasetOptions, schema: Any) -> tf.data.Dataset:
        return tfxio.TFExampleRecord(file_pattern=files, schema=schema).TensorFlowDataset(options)
    return DataAccessor(tf_dataset_factory=factory, record_batch_factory=None, data_view_decode_fn=None)


def _schema() -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    for name, kind in (("row_id", schema_pb2.INT), ("value", schema_pb2.FLOAT), ("label", schema_pb2.INT)):
        feature = schema.feature.add(name=name, type=kind)
        feature.presence.min_fraction = 1.0
        feature.shape.dim.add(size=1)
    return schema


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    """Two files (so reads can interleave), rows 0..99, label = row is even."""
    paths = []
    for part, rows in enumerate((range(60), range(60, ROWS))):
        path = str(tmp_path / f"part-{part}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for row in rows:
                example = tf.train.Example(features=tf.train.Features(feature={
                    "row_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[row])),
                    "value": tf.train.Feature(float_list=tf.train.FloatList(value=[row / 10])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row % 2 == 0)])),
                }))
                writer.write(example.SerializeToString())
        paths.append(path)
    return paths


def _to_model_inputs(features: dict[str, tf.Tensor], label: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    return ({"row_id": tf.reshape(features["row_id"], [-1]), "value": features["value"]},
            tf.cast(tf.reshape(label, [-1, 1]), tf.float32))


def _dataset(files: list[str], *, seed: int = 1, shuffle: bool = True, **options: Any) -> tf.data.Dataset:
    return make_dataset(files, _data_accessor(), _schema(), label_key="label", batch_size=BATCH, shuffle=shuffle,
                        seed=seed, to_model_inputs=_to_model_inputs, options=InputSettings(**options))


def _row_ids(dataset: tf.data.Dataset, batches: int) -> np.ndarray:
    return np.concatenate([inputs["row_id"].numpy() for inputs, _ in dataset.take(batches)])


@pytest.mark.parametrize("cache", ["memory", "off"])
def test_batches_are_full_and_carry_the_mapped_inputs(files: list[str], cache: str) -> None:
    for inputs, label in _dataset(files, cache=cache).take(30):  # 240 rows: more than two passes
        assert inputs["row_id"].shape == (BATCH,) and inputs["value"].shape == (BATCH, 1)
        assert label.shape == (BATCH, 1) and label.dtype == tf.float32
        np.testing.assert_allclose(inputs["value"].numpy()[:, 0], inputs["row_id"].numpy() / 10, rtol=1e-6)
        np.testing.assert_array_equal(label.numpy()[:, 0], inputs["row_id"].numpy() % 2 == 0)


def test_memory_cache_reshuffles_every_epoch_and_covers_every_row(files: list[str]) -> None:
    ids = _row_ids(_dataset(files, cache="memory"), batches=25)  # 200 rows = two passes
    first, second = ids[:ROWS], ids[ROWS:]
    assert sorted(first) == list(range(ROWS)) and sorted(second) == list(range(ROWS))
    assert not np.array_equal(first, second), "the second epoch must be reshuffled"
    assert not np.array_equal(first, np.arange(ROWS)), "the first epoch must be shuffled"


def test_without_shuffle_rows_come_in_file_order(files: list[str]) -> None:
    ids = _row_ids(_dataset(files, shuffle=False, cache="memory"), batches=25)
    np.testing.assert_array_equal(ids, np.concatenate([np.arange(ROWS), np.arange(ROWS)]))


@pytest.mark.parametrize("cache", ["memory", "off"])
def test_order_follows_the_seed(files: list[str], cache: str) -> None:
    runs = [_row_ids(_dataset(files, seed=seed, cache=cache), batches=20) for seed in (3, 3, 4)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_memory_cache_serves_later_epochs_without_the_files(files: list[str]) -> None:
    iterator = iter(_dataset(files, cache="memory", prefetch=1))
    for _ in range(13):  # 104 rows: the first pass is read completely
        next(iterator)
    for path in files:
        os.remove(path)
    later = np.concatenate([next(iterator)[0]["row_id"].numpy() for _ in range(25)])
    assert set(later) == set(range(ROWS))


def test_streaming_reads_the_files_again(files: list[str]) -> None:
    iterator = iter(_dataset(files, cache="off", prefetch=1, parallel_reads=1, parallel_calls=1,
                             shuffle_buffer=1))
    for _ in range(13):
        next(iterator)
    for path in files:
        os.remove(path)

    def read_on() -> None:
        for _ in range(30):
            next(iterator)

    with pytest.raises((tf.errors.NotFoundError, tf.errors.OpError)):
        read_on()


def test_options_from_config_and_their_errors() -> None:
    data = {"label": "label", "features": {"value": "float"}}
    options = TrainerSettings.from_custom_config({"data": data, "training": {"input": {
        "cache": "off", "shuffle_buffer": 64, "parallel_reads": 2, "parallel_calls": "autotune",
        "prefetch": "autotune", "deterministic": False}}}).training.input
    assert options == InputSettings(cache="off", shuffle_buffer=64, parallel_reads=2, parallel_calls="autotune",
                                    prefetch="autotune", deterministic=False)
    assert [tf_data_value(v) for v in (options.parallel_reads, options.parallel_calls)] == [2, AUTOTUNE]
    assert TrainerSettings.from_custom_config({"data": data}).training.input == InputSettings()
    with pytest.raises(SettingsError, match=r"training\.input\.cache: .*'memory' or 'off'"):
        TrainerSettings.from_custom_config({"data": data, "training": {"input": {"cache": "disk"}}})
    with pytest.raises(SettingsError, match=r"training\.input\.parallel_calls: .*>= 1 or 'autotune', got 0"):
        TrainerSettings.from_custom_config({"data": data, "training": {"input": {"parallel_calls": 0}}})
