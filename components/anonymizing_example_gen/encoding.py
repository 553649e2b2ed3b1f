"""Anonymized rows to tf.train.Example: one feature per output column, typed by the policy."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensorflow.core.example import example_pb2

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
