"""Serialized tf.Examples read back as the named tensors a raw-feature signature takes.

Why: a decision taken on ``serving_default`` (one string input of serialized tf.Examples, what TF
Serving's Classify and most bank clients send) is remembered as those bytes, while the ``explain``
signature takes the raw features by name. Reading the features out of the very bytes that decided lets a
review explain that decision without the client sending anything again.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2

from serving.protocol.errors import Code, ServingError
from serving.protocol.input_spec import InputSpec
from serving.protocol.tensors import NUMPY_DTYPE

_LIST_OF = {types_pb2.DT_STRING: "bytes_list", types_pb2.DT_FLOAT: "float_list", types_pb2.DT_DOUBLE: "float_list"}


def _values(example: example_pb2.Example, name: str, dtype: int) -> list:
    feature = example.features.feature.get(name)
    if feature is None:
        return []
    kind = _LIST_OF.get(dtype, "int64_list")
    if feature.WhichOneof("kind") not in (kind, None):
        raise ServingError(Code.FAILED_PRECONDITION, (
            f"The remembered tf.Example holds feature '{name}' as {feature.WhichOneof('kind')}, but the signature "
            f"takes it as {kind}: the example was not written for this model"))
    return list(getattr(feature, kind).value)


def examples_to_inputs(serialized: Sequence[bytes], spec: InputSpec) -> dict[str, np.ndarray]:
    """One array per input of ``spec``, a row per example: [rows] for a scalar input, [rows, n] for a list."""
    examples = []
    for row, data in enumerate(serialized):
        example = example_pb2.Example()
        try:
            example.ParseFromString(bytes(data))
        except Exception:  # noqa: BLE001 (protobuf raises its own DecodeError type per implementation)
            raise ServingError(Code.FAILED_PRECONDITION,
                               f"Remembered input row {row} is not a serialized tf.Example") from None
        examples.append(example)
    inputs: dict[str, np.ndarray] = {}
    for alias, (dtype, shape) in spec.items():
        rows = [_values(example, alias, dtype) for example in examples]
        missing = [row for row, values in enumerate(rows) if not values]
        if missing:
            raise ServingError(Code.FAILED_PRECONDITION, (
                f"The remembered tf.Example of row {missing[0]} has no feature '{alias}', which the signature "
                f"takes; features present: {sorted(examples[missing[0]].features.feature)}"))
        scalar = shape is not None and len(shape) == 1
        widths = {len(values) for values in rows}
        if scalar and widths != {1}:
            raise ServingError(Code.FAILED_PRECONDITION, (
                f"Feature '{alias}' holds {sorted(widths)} values in the remembered tf.Examples; the signature "
                "takes one value per row"))
        if not scalar and len(widths) != 1:
            raise ServingError(Code.FAILED_PRECONDITION, (
                f"Feature '{alias}' holds lists of lengths {sorted(widths)} in the remembered tf.Examples; the "
                "signature takes one length for every row"))
        array = np.array([values[0] for values in rows] if scalar else rows,
                         dtype=object if dtype == types_pb2.DT_STRING else NUMPY_DTYPE[dtype])
        if shape is not None and len(shape) > 1 and any(d >= 0 and d != a for d, a in zip(shape[1:], array.shape[1:],
                                                                                         strict=False)):
            raise ServingError(Code.FAILED_PRECONDITION, (
                f"Feature '{alias}' has shape {list(array.shape[1:])} per row in the remembered tf.Examples; the "
                f"signature takes {list(shape[1:])}"))
        inputs[alias] = array
    return inputs
