"""Anonymized rows to tf.train.Example: one feature per output column, typed by the policy."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from tensorflow.core.example import example_pb2
from tfx_bsl.coders import example_coder

from components.anonymizing_example_gen.feature_settings import KIND_OF_DTYPE, Kind


def column_kinds(output_columns: Mapping[str, str]) -> dict[str, Kind]:
    """Output column dtypes (privacy policy) to tf.Example feature kinds; timestamps are int64 seconds."""
    return {name: KIND_OF_DTYPE[dtype] for name, dtype in output_columns.items()}


def to_example(row: Mapping[str, Any], kinds: Mapping[str, Kind]) -> example_pb2.Example:
    """A missing value becomes an empty feature, as CsvExampleGen does, so every example has every key.

    Filled in place (map entry, then its list): building each Feature and the map as separate messages
    took 2-3 times as long, and this runs for every emitted row.
    """
    example = example_pb2.Example()
    features = example.features.feature
    for name, kind in kinds.items():
        value = row.get(name)
        values = [] if value is None else value if isinstance(value, list) else [value]
        feature = features[name]
        if kind == "bytes":
            feature.bytes_list.value.extend([v.encode("utf-8") for v in values])
        elif kind == "int":
            feature.int64_list.value.extend(values)
        else:
            feature.float_list.value.extend(values)
    return example


def to_examples(columns: Mapping[str, Sequence[Any] | np.ndarray], kinds: Mapping[str, Kind], rows: int) -> list[bytes]:
    """Many rows at once, as serialized tf.Examples equal to `to_example`'s (C++ encoder, no message per row).

    A column is a list of values (None: an empty feature, as `to_example` writes), a 1-D array (one value
    per row) or a 2-D array (a fixed-length list per row). Floats go in as float32, as a float_list holds them.
    """
    arrays, names = [], []
    for name, kind in kinds.items():
        arrays.append(_list_array(columns[name], kind, rows))
        names.append(name)
    return example_coder.RecordBatchToExamples(pa.RecordBatch.from_arrays(arrays, names))


_ARROW: dict[Kind, pa.DataType] = {"float": pa.float32(), "int": pa.int64(), "bytes": pa.large_binary()}
_NUMPY: dict[Kind, type] = {"float": np.float32, "int": np.int64}


def _list_array(column: Sequence[Any] | np.ndarray, kind: Kind, rows: int) -> pa.LargeListArray:
    if isinstance(column, np.ndarray) and column.dtype != object:
        width = 1 if column.ndim == 1 else column.shape[1]
        offsets = np.arange(0, rows * width + 1, width, dtype=np.int64)
        flat = column.reshape(-1)
        values = pa.array(flat.astype(_NUMPY[kind]) if kind != "bytes" else [v.encode("utf-8") for v in flat],
                          type=_ARROW[kind])
        return pa.LargeListArray.from_arrays(pa.array(offsets), values)
    items = list(column.reshape(rows, -1)) if isinstance(column, np.ndarray) else column
    lengths = np.zeros(rows + 1, dtype=np.int64)
    flat_values: list[Any] = []
    for index, value in enumerate(items):
        values = [] if value is None else list(value) if isinstance(value, (list, np.ndarray)) else [value]
        lengths[index + 1] = len(values)
        flat_values.extend(values)
    if kind == "bytes":
        data = pa.array([v.encode("utf-8") for v in flat_values], type=_ARROW[kind])
    else:
        data = pa.array(np.array(flat_values, dtype=_NUMPY[kind]), type=_ARROW[kind])
    return pa.LargeListArray.from_arrays(pa.array(np.cumsum(lengths)), data)
