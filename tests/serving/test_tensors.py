"""TensorProto decoding: the one-join fast path for float_val inputs equals the per-input decode."""
from __future__ import annotations

import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from serving import tensors
from serving.tensors import StackedInputs, from_proto, stack_float_protos, stack_predict_inputs, stack_uniform, to_proto


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


def _request(protos: dict[str, tensor_pb2.TensorProto]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(output_filter=["probabilities"])
    request.model_spec.name = "demo"
    request.model_spec.signature_name = "predict_raw"
    for alias, proto in protos.items():
        request.inputs[alias].CopyFrom(proto)
    return request


def test_the_native_request_scan_equals_the_per_input_path() -> None:
    """serving/_native_codec's scan of the whole serialized request gives what stack_float_protos gives,
    bit for bit, and declines (None) exactly where it does."""
    assert tensors._native_codec is not None, "serving/_native_codec is not built: apt-get install gcc python3.11-dev, then make install"
    scan = tensors._native_codec.predict_float_inputs
    rng = np.random.default_rng(5)
    for rows in (1, 2, 64, 513):
        arrays = {f"feature_{i}": rng.normal(size=rows).astype(np.float32) for i in (12, 3, 0, 29, 7)}
        arrays["feature_12"][0] = np.nan
        arrays["é_unicode"] = np.full(rows, -0.0, np.float32)
        request = _request({alias: _float_val(array) for alias, array in arrays.items()})
        native = stack_predict_inputs(request)
        reference = stack_float_protos(request.inputs)
        assert isinstance(native, StackedInputs) and native.aliases == reference.aliases
        assert native.matrix.dtype == np.float32 and native.matrix.shape == (6, rows) and native.matrix.flags.writeable
        assert native.matrix.tobytes() == reference.matrix.tobytes()
    for proto in _not_plain_float_val():
        request = _request({**BASE, "f1": proto})
        assert scan(request.SerializeToString()) is None and stack_float_protos(request.inputs) is None
    assert scan(_request({"only": BASE["f0"]}).SerializeToString()) is None
    assert scan(b"\xff\xff") is None and scan(b"") is None  # not a message, or no inputs
    whole = _request(BASE).SerializeToString()
    for cut in range(1, len(whole)):  # a cut inside a field is declined; at a field boundary it is a shorter request
        found = scan(whole[:cut])
        assert found is None or (set(found[0]) <= set(BASE) and len(found[0]) >= 2)
