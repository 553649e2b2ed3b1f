"""numpy <-> TensorProto and TF dtype names, without TensorFlow's slower generic converters."""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from serving.protocol.errors import invalid_argument

DT = types_pb2.DataType

NUMPY_DTYPE: dict[int, np.dtype] = {
    types_pb2.DT_FLOAT: np.dtype(np.float32),
    types_pb2.DT_DOUBLE: np.dtype(np.float64),
    types_pb2.DT_INT32: np.dtype(np.int32),
    types_pb2.DT_UINT8: np.dtype(np.uint8),
    types_pb2.DT_INT16: np.dtype(np.int16),
    types_pb2.DT_INT8: np.dtype(np.int8),
    types_pb2.DT_STRING: np.dtype(object),
    types_pb2.DT_INT64: np.dtype(np.int64),
    types_pb2.DT_BOOL: np.dtype(np.bool_),
    types_pb2.DT_UINT16: np.dtype(np.uint16),
    types_pb2.DT_UINT32: np.dtype(np.uint32),
    types_pb2.DT_UINT64: np.dtype(np.uint64),
    types_pb2.DT_HALF: np.dtype(np.float16),
    types_pb2.DT_COMPLEX64: np.dtype(np.complex64),
    types_pb2.DT_COMPLEX128: np.dtype(np.complex128),
}
TF_DTYPE: dict[np.dtype, int] = {v: k for k, v in NUMPY_DTYPE.items()}

# tensorflow::DataTypeString names, used in TF Serving's messages.
DTYPE_NAME: dict[int, str] = {
    types_pb2.DT_FLOAT: "float", types_pb2.DT_DOUBLE: "double", types_pb2.DT_INT32: "int32",
    types_pb2.DT_UINT8: "uint8", types_pb2.DT_INT16: "int16", types_pb2.DT_INT8: "int8",
    types_pb2.DT_STRING: "string", types_pb2.DT_COMPLEX64: "complex64", types_pb2.DT_INT64: "int64",
    types_pb2.DT_BOOL: "bool", types_pb2.DT_QINT8: "qint8", types_pb2.DT_QUINT8: "quint8",
    types_pb2.DT_QINT32: "qint32", types_pb2.DT_BFLOAT16: "bfloat16", types_pb2.DT_QINT16: "qint16",
    types_pb2.DT_QUINT16: "quint16", types_pb2.DT_UINT16: "uint16", types_pb2.DT_COMPLEX128: "complex128",
    types_pb2.DT_HALF: "half", types_pb2.DT_RESOURCE: "resource", types_pb2.DT_VARIANT: "variant",
    types_pb2.DT_UINT32: "uint32", types_pb2.DT_UINT64: "uint64",
}


def dtype_name(dtype: int) -> str:
    return DTYPE_NAME.get(dtype, f"unknown dtype enum ({dtype})")


def shape_proto(shape: tuple[int, ...]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in shape])


def to_proto(array: np.ndarray, dtype: int | None = None, *,
             use_tensor_content: bool = False) -> tensor_pb2.TensorProto:
    """Typed repeated fields by default (what TF Serving sends); raw ``tensor_content`` on request."""
    array = np.asarray(array)
    if dtype is None:
        dtype = types_pb2.DT_STRING if array.dtype.kind in "OSU" else TF_DTYPE[array.dtype]
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape_proto(array.shape))
    flat = array.ravel()
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
    elif use_tensor_content:
        proto.tensor_content = np.ascontiguousarray(flat, dtype=NUMPY_DTYPE[dtype]).tobytes()
    elif dtype == types_pb2.DT_FLOAT:
        proto.float_val.extend(flat.astype(np.float32).tolist())
    elif dtype == types_pb2.DT_DOUBLE:
        proto.double_val.extend(flat.tolist())
    elif dtype in (types_pb2.DT_INT32, types_pb2.DT_INT16, types_pb2.DT_INT8, types_pb2.DT_UINT8, types_pb2.DT_UINT16):
        proto.int_val.extend(flat.tolist())
    elif dtype == types_pb2.DT_INT64:
        proto.int64_val.extend(flat.tolist())
    elif dtype == types_pb2.DT_BOOL:
        proto.bool_val.extend(flat.tolist())
    elif dtype == types_pb2.DT_UINT32:
        proto.uint32_val.extend(flat.tolist())
    elif dtype == types_pb2.DT_UINT64:
        proto.uint64_val.extend(flat.tolist())
    elif dtype == types_pb2.DT_HALF:
        proto.half_val.extend(flat.astype(np.float16).view(np.uint16).tolist())
    else:
        proto.tensor_content = np.ascontiguousarray(flat, dtype=NUMPY_DTYPE[dtype]).tobytes()
    return proto


_FIELD = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val", types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val", types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val", types_pb2.DT_INT64: "int64_val", types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_UINT32: "uint32_val", types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_STRING: "string_val",
    types_pb2.DT_HALF: "half_val", types_pb2.DT_COMPLEX64: "scomplex_val", types_pb2.DT_COMPLEX128: "dcomplex_val",
}


def _packed_floats(proto: tensor_pb2.TensorProto, count: int) -> np.ndarray | None:
    """``float_val`` straight from the message's wire bytes (one packed run of little-endian floats):
    numpy reading the repeated field item by item cost ~6 us per 64 values, this ~2 us. None when the
    bytes are not the plain layout (dtype, shape, one packed float_val), so the caller takes the field."""
    raw = proto.SerializeToString()
    pos, end, found = 0, len(raw), None
    while pos < end:
        tag = raw[pos]
        pos += 1
        if tag & 0x80:
            return None
        wire = tag & 7
        length = 0
        shift = 0
        while True:  # varint: the value (wire type 0) or the length (wire type 2)
            if pos >= end:
                return None
            byte = raw[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        if wire == 0:
            continue
        if wire != 2:
            return None
        if tag >> 3 == 5:  # float_val
            if found is not None:
                return None
            found = (pos, length)
        pos += length
    if found is None or found[1] != 4 * count or pos != end:
        return None
    return np.frombuffer(raw, dtype="<f4", count=count, offset=found[0])


def from_proto(proto: tensor_pb2.TensorProto, alias: str = "") -> np.ndarray:
    """Decode either representation; an inconsistent proto is INVALID_ARGUMENT ``tensor parsing error``."""
    dtype = proto.dtype
    if dtype not in NUMPY_DTYPE:
        raise invalid_argument(f"tensor parsing error: {alias}")
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument(f"tensor parsing error: {alias}")
    dims = proto.tensor_shape.dim
    if len(dims) == 1:  # the common case (one feature column) without generator expressions
        count = dims[0].size
        shape: tuple[int, ...] = (count,)
        if count < 0:
            raise invalid_argument(f"tensor parsing error: {alias}")
    else:
        shape = tuple(d.size for d in dims)
        if any(d < 0 for d in shape):
            raise invalid_argument(f"tensor parsing error: {alias}")
        count = math.prod(shape)  # exact int, no numpy reduction per input
    np_dtype = NUMPY_DTYPE[dtype]
    if dtype == types_pb2.DT_FLOAT and not proto.tensor_content:
        data = _packed_floats(proto, count) if count >= 16 else None
        if data is None:
            data = np.array(proto.float_val, dtype=np_dtype)
        if data.size == count:
            return data.reshape(shape) if len(shape) != 1 else data
    if proto.tensor_content and dtype != types_pb2.DT_STRING:
        data = np.frombuffer(proto.tensor_content, dtype=np_dtype)
        if data.size != count:
            raise invalid_argument(f"tensor parsing error: {alias}")
        return data.reshape(shape)
    values = getattr(proto, _FIELD[dtype])
    if dtype == types_pb2.DT_STRING:
        data = np.empty(len(values), dtype=object)
        data[:] = list(values)
    elif dtype == types_pb2.DT_HALF:
        data = np.asarray(values, dtype=np.uint16).view(np.float16)
    elif dtype in (types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128):
        pairs = np.asarray(values, dtype=np.float64).reshape(-1, 2)
        data = (pairs[:, 0] + 1j * pairs[:, 1]).astype(np_dtype)
    else:
        data = np.asarray(values, dtype=np_dtype)
    if data.size == count:
        return data.reshape(shape)
    if data.size == 1 and count > 0:  # TF allows a single value to fill the tensor
        return np.full(shape, data[0], dtype=np_dtype)
    if data.size == 0 and count == 0:
        return data.reshape(shape)
    raise invalid_argument(f"tensor parsing error: {alias}")


_INDEXES: dict[tuple[str, ...], dict[str, int]] = {}


class StackedInputs(Mapping[str, np.ndarray]):
    """Named inputs that are the rows of one array (``matrix[i]`` is input ``aliases[i]``; aliases sorted).

    A Mapping like any dict of inputs; checking, batching and the stacked model entry point use
    ``matrix`` directly instead of one array per input (REST rows of plain numbers arrive this way)."""

    __slots__ = ("_index", "aliases", "matrix")

    def __init__(self, matrix: np.ndarray, aliases: tuple[str, ...]) -> None:
        self.matrix = matrix
        self.aliases = aliases
        index = _INDEXES.get(aliases)
        if index is None:
            if len(_INDEXES) > 256:
                _INDEXES.clear()
            index = _INDEXES[aliases] = {alias: i for i, alias in enumerate(aliases)}
        self._index = index

    def __getitem__(self, alias: str) -> np.ndarray:
        return self.matrix[self._index[alias]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.aliases)

    def __len__(self) -> int:
        return len(self.aliases)

    def __contains__(self, alias: object) -> bool:
        return alias in self._index


def stack_uniform(inputs: dict[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    """Several numeric inputs of one dtype and shape as :class:`StackedInputs` (one copy now instead of
    one per check, batch and model call later); anything else unchanged."""
    if len(inputs) < 2:
        return inputs
    aliases = tuple(sorted(inputs))
    first = inputs[aliases[0]]
    dtype, shape = first.dtype, first.shape
    if dtype.kind not in "fiu" or not shape:
        return inputs
    for alias in aliases:
        array = inputs[alias]
        if array.dtype != dtype or array.shape != shape:
            return inputs
    return StackedInputs(np.stack([inputs[alias] for alias in aliases]), aliases)


_FLOAT_HEADERS: dict[int, bytes] = {}


def _float_header(count: int) -> bytes:
    """The wire bytes of a TensorProto holding only dtype DT_FLOAT, shape [count] and ``count`` packed
    ``float_val`` values, up to where the values start."""
    header = _FLOAT_HEADERS.get(count)
    if header is None:
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
        proto.tensor_shape.dim.add().size = count
        proto.float_val.extend([0.0] * count)  # protobuf writes the tag and length; the values are cut off
        if len(_FLOAT_HEADERS) > 256:
            _FLOAT_HEADERS.clear()
        header = _FLOAT_HEADERS[count] = proto.SerializeToString()[: -4 * count]
    return header


def stack_float_protos(protos: Mapping[str, tensor_pb2.TensorProto]) -> StackedInputs | None:
    """Several one-dimensional float inputs sent as ``float_val`` (how clients usually fill a
    PredictRequest) straight into one stacked array: one join and one ``frombuffer`` instead of a decode
    per input and a stack (30 inputs: ~20 us instead of ~110 us). Each input's wire bytes must be exactly
    dtype, shape [n] and n packed floats, with the same n for all; None for anything else, which the
    per-input path then decodes (and reports) as before."""
    if len(protos) < 2:
        return None
    aliases = tuple(sorted(protos))
    first = protos[aliases[0]]
    if first.dtype != types_pb2.DT_FLOAT or len(first.tensor_shape.dim) != 1:
        return None
    count = first.tensor_shape.dim[0].size
    if count < 1:
        return None
    header = _float_header(count)
    size = len(header) + 4 * count
    parts = []
    for alias in aliases:
        raw = protos[alias].SerializeToString()
        if len(raw) != size or not raw.startswith(header):
            return None
        parts.append(raw)
    rows = np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(len(aliases), size)[:, len(header):]
    return StackedInputs(np.ascontiguousarray(rows).view("<f4").astype(np.float32, copy=False), aliases)


def stack_predict_inputs(request: predict_pb2.PredictRequest) -> StackedInputs | None:
    """:func:`stack_float_protos` of a PredictRequest's inputs."""
    return stack_float_protos(request.inputs)
