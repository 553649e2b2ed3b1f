"""Rows for conversion and measurement: a signature's raw inputs read from tf.Example TFRecord files.

The raw-feature signature says what it takes (names, dtypes, shapes); the same columns are read from
ExampleGen's split files, so the SavedModel and each TFLite variant are scored on identical arrays.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optimization.errors import OptimizationError


@dataclass(frozen=True)
class InputSpec:
    """One input of the signature: its dtype and its shape after the batch dimension."""

    dtype: Any  # tf.DType
    inner_shape: tuple[int, ...]


def raw_signature(loaded: Any, signature: str) -> Any:
    """The concrete function of ``signature``, or an error naming the signatures the model has."""
    available = sorted(loaded.signatures.keys())
    if signature not in available:
        raise OptimizationError(
            f"the model has no signature {signature!r} (it has {available}); export a raw-feature signature "
            "(named inputs, Transform graph inside, as models/tabular/signatures.py does) or set "
            "optimization.signature to one of these")
    function = loaded.signatures[signature]
    _, inputs = function.structured_input_signature
    if not inputs or any(spec.dtype.name == "string" and spec.name in ("examples", "inputs") and len(inputs) == 1
                         for spec in inputs.values()):
        raise OptimizationError(
            f"signature {signature!r} takes serialized tf.Examples, not raw features; set "
            "optimization.signature to the raw-feature signature (e.g. serving_raw)")
    return function


def input_specs(function: Any) -> dict[str, InputSpec]:
    """Each input's dtype and inner shape; unknown inner dimensions cannot be read from tf.Examples."""
    _, inputs = function.structured_input_signature
    specs = {}
    for name, spec in inputs.items():
        inner = tuple(spec.shape.as_list()[1:])
        if any(dim is None for dim in inner):
            raise OptimizationError(
                f"input {name!r} has shape {spec.shape} with an unknown inner dimension; give the raw-feature "
                "signature fixed shapes after the batch dimension, e.g. [None] or [None, 8]")
        specs[name] = InputSpec(spec.dtype, inner)
    return specs


def read_rows(files: Sequence[str | Path], specs: dict[str, InputSpec], label: str | None = None,
              limit: int | None = None, compression: str = "GZIP") -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Up to ``limit`` rows of the inputs (and the label) from tf.Example TFRecords, as numpy arrays.

    A feature absent from an example reads as 0 or the empty string, as a tf.Example with an empty
    feature reaches the model through parse_example's defaults.
    """
    import tensorflow as tf

    if not files:
        raise OptimizationError("no example files to read; check the split name and the examples artifact")
    parse_spec = {name: tf.io.VarLenFeature(_parse_dtype(spec.dtype)) for name, spec in specs.items()}
    dataset = tf.data.TFRecordDataset([str(f) for f in files], compression_type=compression)
    if label is not None:
        parse_spec[label] = tf.io.VarLenFeature(_label_dtype(dataset, label))
    if limit is not None:
        dataset = dataset.take(limit)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in parse_spec}
    for batch in dataset.batch(1024):
        parsed = tf.io.parse_example(batch, parse_spec)
        rows = int(batch.shape[0])
        for name, sparse in parsed.items():
            inner = specs[name].inner_shape if name in specs else ()
            width = int(np.prod(inner)) if inner else 1
            default = "" if sparse.dtype == tf.string else 0
            dense = tf.sparse.to_dense(tf.sparse.reset_shape(sparse, [rows, max(width, int(sparse.dense_shape[1]))]),
                                       default_value=default).numpy()[:, :width]
            columns[name].append(dense.reshape((rows, *inner)))
    arrays = {name: np.concatenate(parts) if parts else np.empty((0,)) for name, parts in columns.items()}
    labels = arrays.pop(label).astype(np.float64).ravel() if label is not None else None
    features = {name: arrays[name].astype(specs[name].dtype.as_numpy_dtype) if specs[name].dtype.name != "string"
                else arrays[name] for name in specs}
    return features, labels


def _label_dtype(dataset: Any, label: str) -> Any:
    """The label's stored type (CSV ExampleGen writes 0/1 as int64, others may write floats)."""
    import tensorflow as tf

    for record in dataset.take(1):
        example = tf.train.Example.FromString(record.numpy())
        if label not in example.features.feature:
            raise OptimizationError(
                f"the examples have no label column {label!r} (columns: {sorted(example.features.feature)}); "
                "fix data.label")
        kind = example.features.feature[label].WhichOneof("kind")
        return {"float_list": tf.float32, "int64_list": tf.int64}.get(kind, tf.float32)
    return tf.float32


def _parse_dtype(dtype: Any) -> Any:
    """tf.Example holds only float32, int64 and bytes; narrower ints are cast after parsing."""
    import tensorflow as tf

    if dtype == tf.string:
        return tf.string
    return tf.float32 if dtype.is_floating else tf.int64


def row_count(rows: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(rows.values()))) if rows else 0
