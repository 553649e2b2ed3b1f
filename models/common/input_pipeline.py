"""The Trainer's tf.data input pipeline, one implementation for every use case, tuned from config.

Transformed examples are read through TFX's `DataAccessor` (TFXIO), which already reads files in
parallel (an interleave over files, ``parallel_reads``) and parses them in parallel
(``parallel_calls``); the model module only maps parsed features to model inputs. Two shapes:

* ``cache: memory`` (default): one pass is read and parsed, mapped to model inputs, split into
  examples and kept in memory; every later epoch is served from memory and reshuffled with the
  configured seed. Later epochs cost no I/O, parsing or feature mapping, which is what makes the
  input outrun training (benchmarks/training). Needs memory for the mapped examples of the split.
* ``cache: off``: stream from the files on every epoch with TFXIO's own shuffle buffer, for data
  that does not fit in memory. (There is no file cache: Keras stops the validation iterator part
  way through the split, which leaves tf.data's file cache locked and unfinished.)

Both end in batches of exactly ``batch_size`` (DP-SGD's accounting and per-replica shares need
full batches), repeat forever (steps per epoch come from the plan), and prefetch. With
``deterministic: true`` the order is a function of the seed alone, so two trainings with the same
seed see the same batches (models/common/determinism.py).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import tensorflow as tf
from tfx_bsl.public import tfxio

from models.common.settings import InputSettings

AUTOTUNE = tf.data.AUTOTUNE

Features = Mapping[str, Any]
ToModelInputs = Callable[[Features, tf.Tensor], tuple[Any, tf.Tensor]]


def tf_data_value(value: int | Literal["autotune"]) -> int:
    """A thread or buffer count of InputSettings as tf.data takes it ('autotune' -> tf.data.AUTOTUNE)."""
    return AUTOTUNE if value == "autotune" else value


def make_dataset(
    file_pattern: list[str],
    data_accessor: Any,
    schema: Any,
    *,
    label_key: str,
    batch_size: int,
    shuffle: bool,
    seed: int,
    to_model_inputs: ToModelInputs,
    options: InputSettings | None = None,
) -> tf.data.Dataset:
    """Repeating full batches of ``to_model_inputs(features, label)`` from transformed examples.

    ``data_accessor`` is ``fn_args.data_accessor``; ``schema`` the transformed schema
    (``TFTransformOutput.transformed_metadata.schema``); ``options`` defaults to ``InputSettings()``.
    """
    options = options or InputSettings()
    cached = options.cache == "memory"
    reads, calls, prefetch = (tf_data_value(value) for value in
                              (options.parallel_reads, options.parallel_calls, options.prefetch))
    read_options = tfxio.TensorFlowDatasetOptions(
        batch_size=batch_size,
        drop_final_batch=not cached,
        num_epochs=1 if cached else None,
        shuffle=shuffle and not cached,
        shuffle_buffer_size=options.shuffle_buffer,
        shuffle_seed=seed,
        prefetch_buffer_size=prefetch,
        reader_num_threads=reads,
        parser_num_threads=calls,
        sloppy_ordering=not options.deterministic,
        label_key=label_key,
    )
    dataset = data_accessor.tf_dataset_factory(file_pattern, read_options, schema)
    dataset = dataset.map(to_model_inputs, num_parallel_calls=calls,
                          deterministic=options.deterministic)
    if cached:
        dataset = dataset.unbatch().cache()
        if shuffle:
            dataset = dataset.shuffle(options.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.repeat().batch(batch_size, drop_remainder=True, num_parallel_calls=calls,
                                         deterministic=options.deterministic)
    return dataset.prefetch(prefetch)


def trainer_datasets(
    fn_args: Any,
    schema: Any,
    *,
    label_key: str,
    seed: int,
    to_model_inputs: ToModelInputs,
    options: InputSettings,
) -> Callable[[int], tuple[tf.data.Dataset, tf.data.Dataset]]:
    """``datasets(global_batch_size) -> (train, eval)`` for `models.common.training.train_and_export`."""

    def datasets(batch_size: int) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        return tuple(
            make_dataset(files, fn_args.data_accessor, schema, label_key=label_key, batch_size=batch_size,
                         shuffle=shuffle, seed=seed, to_model_inputs=to_model_inputs, options=options)
            for files, shuffle in ((fn_args.train_files, True), (fn_args.eval_files, False)))

    return datasets
