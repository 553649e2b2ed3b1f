"""A signature's contract, from its SignatureDef: what the inputs must be, checked before any call.

TF Serving's alias check, then dtype and shape (clear errors, not TensorFlow's); inputs of other shapes
are ``ShapeMismatch``, which the backend feeds to the graph alone, as TF Serving does.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving.protocol.errors import Code, ServingError, invalid_argument
from serving.protocol.input_spec import InputSpec
from serving.protocol.tensors import NUMPY_DTYPE, TF_DTYPE, StackedInputs, dtype_name

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
PREDICT_METHOD = "tensorflow/serving/predict"
INIT_OP_SIGNATURE = "__saved_model_init_op"


@dataclass
class Signature:
    """A signature's contract (from the SignatureDef) plus its callable."""

    name: str
    definition: meta_graph_pb2.SignatureDef
    function: Any = None
    flat_runner: Callable[[list[Any]], Mapping[str, Any]] | None = None  # flat tensors in, output tensors out
    # every input stacked in one array (see call_paths.fuse)
    fused: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None

    @property
    def flat_call(self) -> bool:
        """Whether the flat entry point was shown to answer as the public call (see ``call_paths.prepare``)."""
        return self.flat_runner is not None

    @property
    def method_name(self) -> str:
        return self.definition.method_name

    @cached_property
    def input_spec(self) -> InputSpec:
        """Read once: walking the SignatureDef proto per request cost more than the model call. The one
        spec of this signature: the REST decoder takes it (through the handle), the checks below derive from it."""
        return InputSpec.of(self.definition)

    @cached_property
    def flat_inputs(self) -> tuple[tuple[str, int], ...]:
        """(alias, dtype) in the flat entry point's order (sorted aliases)."""
        spec = self.input_spec
        return tuple((alias, spec[alias][0]) for alias in sorted(spec))

    @cached_property
    def sorted_aliases(self) -> tuple[str, ...]:
        return self.input_spec.sorted_aliases  # the spec's own tuple, looked up once (per-request hot path)

    @cached_property
    def checks(self) -> tuple[tuple[str, Any, int, tuple[int, ...] | None], ...]:
        """Per input (alias, numpy dtype or None, tf dtype, shape): what check_inputs compares, precomputed."""
        return tuple((alias, NUMPY_DTYPE.get(dtype), dtype, shape) for alias, (dtype, shape) in self.input_spec.items())

    @cached_property
    def fixed_inner_shapes(self) -> bool:
        """Every input numeric with a known shape but for the batch dimension: requests that pass
        check_inputs then share their non-batch shapes and dtypes, so batching needs no per-request key."""
        return bool(self.input_spec) and all(
            dtype != types_pb2.DT_STRING and dtype in NUMPY_DTYPE and shape is not None and len(shape) >= 1
            and all(d >= 0 for d in shape[1:])
            for dtype, shape in self.input_spec.values()
        )

    @cached_property
    def stackable(self) -> tuple[Any, tuple[int, ...]] | None:
        """(numpy dtype, shape) when every input has the same numeric dtype and fully known shape but for
        the batch dimension, and there are several inputs: they can travel as one stacked tensor."""
        spec = self.input_spec
        if len(spec) < 2:
            return None
        kinds = {(dtype, shape) for dtype, shape in spec.values()}
        if len(kinds) != 1:
            return None
        (dtype, shape), = kinds
        if dtype == types_pb2.DT_STRING or dtype not in NUMPY_DTYPE or shape is None or not shape:
            return None
        if any(d < 0 for d in shape[1:]):
            return None
        return NUMPY_DTYPE[dtype], shape

    @cached_property
    def output_dtypes(self) -> dict[str, int]:
        return {alias: info.dtype for alias, info in self.definition.outputs.items()}


def read_meta_graph(export_dir: str | os.PathLike[str],
                    tags: Sequence[str] = ("serve",)) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraphDef with exactly ``tags``, read from saved_model.pb or saved_model.pbtxt."""
    export_dir = Path(export_dir)
    binary, text = export_dir / "saved_model.pb", export_dir / "saved_model.pbtxt"
    saved_model = saved_model_pb2.SavedModel()
    if binary.exists():
        saved_model.ParseFromString(binary.read_bytes())
    elif text.exists():
        from google.protobuf import text_format

        text_format.Parse(text.read_text(), saved_model)
    else:
        raise ServingError(
            Code.NOT_FOUND,
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {export_dir}. "
            "Check that the directory exists and that you have the right permissions for accessing it.",
        )
    wanted = set(tags)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == wanted:
            return meta_graph
    available = [",".join(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise ServingError(
        Code.NOT_FOUND,
        f"Could not find meta graph def matching supplied tags: {{ {' '.join(sorted(wanted))} }}. "
        f"To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: `saved_model_cli` "
        f"(available: {available})",
    )


class ShapeMismatch(ServingError):
    """Inputs with the signature's aliases and dtypes but other shapes. TF Serving feeds such inputs to
    the graph and lets the graph decide (``SavedModelServable.feed_graph``); they never join a batch."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.INVALID_ARGUMENT, message)


def check_inputs(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """TF Serving's alias check, then dtype and shape against the SignatureDef (clear errors, not TF's).
    A shape that differs is ``ShapeMismatch``, for the caller to feed to the graph instead."""
    if type(inputs) is StackedInputs and signature.stackable is not None:  # one array: one check
        dtype, stacked_shape = signature.stackable
        matrix = inputs.matrix
        if (matrix.dtype == dtype and inputs.aliases == signature.sorted_aliases
                and _compatible(stacked_shape, matrix.shape[1:])):
            return
    if len(inputs) == len(signature.checks):  # the common case, in one pass; anything odd takes the full check
        try:
            for alias, expected, _dtype, shape in signature.checks:
                array = inputs[alias]
                if array.dtype != expected or expected is _OBJECT:
                    break
                if shape is not None:
                    dims = array.shape
                    if len(dims) != len(shape):
                        break
                    for d, s in zip(shape, dims, strict=True):
                        if d >= 0 and d != s:
                            break
                    else:
                        continue
                    break
            else:
                return
        except (KeyError, AttributeError):
            pass
    _check_inputs(signature, inputs)


_OBJECT = np.dtype(object)


def _check_inputs(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    spec = signature.input_spec
    sent, wanted = set(inputs), set(spec)
    if sent != wanted:
        if len(sent) != len(wanted):
            extra, missing = sorted(sent - wanted), sorted(wanted - sent)
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(wanted)} len({{{','.join(sorted(sent))}}}) != "
                f"len({{{','.join(sorted(wanted))}}}). Sent extra: {{{','.join(extra)}}}. "
                f"Missing but required: {{{','.join(missing)}}}."
            )
        alias = sorted(wanted - sent)[0]
        info = signature.definition.inputs[alias]
        raise invalid_argument(
            f"Signature input alias: {alias}(feed name: {info.name}) not found in request "
            f"and no default value provided. "
            f"Inputs expected to be in the request {{{','.join(sorted(sent))}}}, or default input alias set: "
        )
    mismatch: ShapeMismatch | None = None
    for alias, (dtype, shape) in spec.items():
        array = inputs[alias]
        expected = NUMPY_DTYPE.get(dtype)
        if expected is None:
            raise ServingError(Code.UNIMPLEMENTED,
                               f"Input {alias} has dtype {dtype_name(dtype)}, which this server cannot feed")
        if array.dtype != expected and not (dtype == types_pb2.DT_STRING and array.dtype.kind in "OS"):
            raise invalid_argument(
                f"Expects arg[{sorted(spec).index(alias)}] ({alias}) to be {dtype_name(dtype)} "
                f"but {_np_name(array)} is provided"
            )
        if shape is not None and not _compatible(shape, array.shape) and mismatch is None:
            mismatch = ShapeMismatch(
                f"Input {alias} has shape {list(array.shape)} but the signature expects "
                f"{[d if d >= 0 else None for d in shape]} (None = any size); reshape the input to match"
            )
    if mismatch is not None:  # raised only once every dtype is known to be right
        raise mismatch


def _np_name(array: np.ndarray) -> str:
    if array.dtype.kind in "OSU":
        return "string"
    return dtype_name(TF_DTYPE.get(array.dtype, -1))


def _compatible(spec: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    return len(spec) == len(shape) and all(d < 0 or d == s for d, s in zip(spec, shape, strict=True))
