"""Anonymized rows to tf.train.Example: one feature per output column, typed by the policy."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensorflow.core.example import example_pb2, feature_pb2

from components.anonymizing_example_gen.feature_settings import KIND_OF_DTYPE, Kind


def column_kinds(output_columns: Mapping[str, str]) -> dict[str, Kind]:
    """Output column dtypes (privacy policy) to tf.Example feature kinds; timestamps are int64 seconds."""
    return {name: KIND_OF_DTYPE[dtype] for name, dtype in output_columns.items()}


def to_example(row: Mapping[str, Any], kinds: Mapping[str, Kind]) -> example_pb2.Example:
    """A missing value becomes an empty feature, as CsvExampleGen does, so every example has every key."""
    features = {}
    for name, kind in kinds.items():
        value = row.get(name)
        values = [] if value is None else value if isinstance(value, list) else [value]
        if kind == "bytes":
            feature = feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[v.encode("utf-8") for v in values]))
        elif kind == "int":
            feature = feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=values))
        else:
            feature = feature_pb2.Feature(float_list=feature_pb2.FloatList(value=values))
        features[name] = feature
    return example_pb2.Example(features=feature_pb2.Features(feature=features))
