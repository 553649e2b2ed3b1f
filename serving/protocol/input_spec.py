"""A signature's inputs as the request decoders need them, read from the SignatureDef once."""
from __future__ import annotations

import operator
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

Shape = tuple[int, ...]


class InputSpec(dict[str, tuple[int, "Shape | None"]]):
    """alias -> (TF dtype enum, shape or None for unknown rank), in the SignatureDef's order.

    Built once per signature and kept by its owner (the servable's ``Signature``, or the gateway's handle),
    so what decoding derives from it (sorted aliases, the row getter, the float dtypes) is computed once
    here and never cached by identity elsewhere. Not to be changed once built."""

    @classmethod
    def of(cls, definition: meta_graph_pb2.SignatureDef) -> InputSpec:
        return cls((alias, (info.dtype, tensor_shape(info))) for alias, info in definition.inputs.items())

    @classmethod
    def from_mapping(cls, spec: Mapping[str, tuple[int, Any]]) -> InputSpec:
        return spec if type(spec) is cls else cls(spec)

    @cached_property
    def sorted_aliases(self) -> tuple[str, ...]:
        return tuple(sorted(self))

    @cached_property
    def row_getter(self) -> Any:
        """A row object's values in sorted-alias order, read by one C-level getter (two aliases or more)."""
        return operator.itemgetter(*self.sorted_aliases)

    @cached_property
    def float_dtypes(self) -> frozenset[int] | None:
        """The inputs' dtypes when all are DT_FLOAT/DT_DOUBLE, else None."""
        dtypes = frozenset(dtype for dtype, _shape in self.values())
        return dtypes if dtypes <= {types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE} else None


def tensor_shape(info: meta_graph_pb2.TensorInfo) -> Shape | None:
    if info.tensor_shape.unknown_rank:
        return None
    return tuple(d.size for d in info.tensor_shape.dim)
