"""TensorProto decoding: the one-join fast path for float_val inputs equals the per-input decode."""
from __future__ import annotations

import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.protocol.tensors import StackedInputs, from_proto, stack_float_protos, stack_uniform, to_proto


def _float_val(values: np.ndarray) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for size in values.shape:
        proto.tensor_shape.dim.add().size = size
    proto.float_val.extend(values.ravel().tolist())
    return proto


@pytest.mark.parametrize("rows", [1, 3, 31, 64, 1000])
def test_float_val_inputs_stack_exactly_like_the_per_input_decode(rows: int) -> None:
    rng = np.random.default_rng(rows)
    arrays = {f"f{i}": rng.normal(size=rows).astype(np.float32) for i in range(12)}
    arrays["f3"][0] = np.nan
    arrays["f4"][-1] = -0.0
    protos = {alias: _float_val(array) for alias, array in arrays.items()}
    fast = stack_float_protos(protos)
    slow = stack_uniform({alias: from_proto(proto, alias) for alias, proto in protos.items()})
    assert isinstance(fast, StackedInputs) and fast.aliases == slow.aliases
    assert fast.matrix.dtype == np.float32 and fast.matrix.shape == (12, rows) and fast.matrix.flags.c_contiguous
    assert fast.matrix.tobytes() == slow.matrix.tobytes()  # bit for bit, NaN and -0.0 included


BASE = {f"f{i}": _float_val(np.arange(4, dtype=np.float32) + i) for i in range(3)}


def _not_plain_float_val() -> list[tensor_pb2.TensorProto]:
    """Float inputs that must leave the one-join fast path to the per-input decode."""
    other_length = _float_val(np.arange(5, dtype=np.float32))
    with_version = _float_val(np.arange(4, dtype=np.float32))
    with_version.version_number = 2
    named_dim = _float_val(np.arange(4, dtype=np.float32))
    named_dim.tensor_shape.dim[0].name = "batch"
    matrix = _float_val(np.ones((2, 2), np.float32))
    content = to_proto(np.arange(4, dtype=np.float32), use_tensor_content=True)
    doubles = tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE)
    doubles.tensor_shape.dim.add().size = 4
    doubles.double_val.extend([1.0, 2.0, 3.0, 4.0])
    short = _float_val(np.arange(4, dtype=np.float32))
    del short.float_val[-1]  # shape says 4, three values: the per-input path reports it
    one_value = _float_val(np.arange(1, dtype=np.float32))
    one_value.tensor_shape.dim[0].size = 4  # one value filling four: the per-input path's broadcast
    empty = _float_val(np.zeros(0, np.float32))
    return [other_length, with_version, named_dim, matrix, content, doubles, short, one_value, empty]


def test_anything_but_plain_same_length_float_val_takes_the_per_input_path() -> None:
    for proto in _not_plain_float_val():
        assert stack_float_protos({**BASE, "f1": proto}) is None
    assert stack_float_protos({"only": BASE["f0"]}) is None
