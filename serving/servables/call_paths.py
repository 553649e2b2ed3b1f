"""The ways into a signature's graph, fastest first, each used only once shown to answer as the public call.

The public keyword call serves from the moment a version loads. :func:`prepare` then checks the flat entry
point (flat tensors in; a third of the keyword call's cost for wide signatures) and, for many same-typed
inputs, a stacked entry point (one input tensor instead of one per input), and switches the signature to
them. All but the keyword call are private TensorFlow API: each is used only if it exists and agrees.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from tensorflow.core.framework import types_pb2

from serving.protocol.tensors import NUMPY_DTYPE
from serving.protocol.tensors import TF_DTYPE as TF_ENUM
from serving.servables.signature import Signature


def prepare(signature: Signature) -> None:
    """Switch ``signature`` to its flat entry point (and the stacked one where it applies) once each is
    shown to answer exactly as the public call. Safe while requests run: a call reads the switches once,
    and every path gives the same answer."""
    if signature.function is None or signature.flat_call:
        return
    if flat_call_works(signature) and signature.stackable is not None:
        signature.fused = fuse(signature)


def flat_call_works(signature: Signature) -> bool:
    """The flat entry point is private TF API: use it only if it exists and agrees with the public call."""
    fn = signature.function
    if not (hasattr(fn, "_call_flat") and hasattr(fn, "captured_inputs")):
        return False
    spec = signature.input_spec
    try:
        sample = {alias: _sample_input(dtype, shape, seed=i) for i, (alias, (dtype, shape)) in enumerate(spec.items())}
    except ValueError:
        return False
    try:
        expected = {k: v.numpy() for k, v in fn(**{k: to_tensor(v, spec[k][0]) for k, v in sample.items()}).items()}
        flat = [to_tensor(sample[alias], dtype) for alias, dtype in signature.flat_inputs]
    except Exception:  # noqa: BLE001 - e.g. a signature that needs specific values
        return False
    signature.flat_runner = _first_agreeing(_runners(fn), flat, expected)
    return signature.flat_call


def fuse(signature: Signature) -> Callable[[np.ndarray], dict[str, np.ndarray]] | None:
    """One entry point for a signature of many same-typed inputs (30 float features): the inputs arrive
    stacked in one tensor and are split inside the graph. Building 30 eager tensors per call cost as
    much as running the model; one tensor costs ~7 us. Used only if it answers exactly as the public call."""
    import tensorflow as tf

    fn = signature.function
    order = [alias for alias, _ in signature.flat_inputs]
    np_dtype, shape = signature.stackable  # type: ignore[misc]
    spec = tf.TensorSpec([len(order), None, *shape[1:]], tf.as_dtype(np_dtype))

    def stacked(matrix: Any) -> Any:
        return fn(**dict(zip(order, tf.unstack(matrix, num=len(order), axis=0), strict=True)))

    try:
        concrete = tf.function(stacked, input_signature=[spec], autograph=False).get_concrete_function()
        sample = {alias: _sample_input(dtype, shape, seed=i)
                  for i, (alias, (dtype, shape)) in enumerate(signature.input_spec.items())}
        expected = {k: v.numpy()
                    for k, v in fn(**{k: to_tensor(v, signature.input_spec[k][0]) for k, v in sample.items()}).items()}
        matrix = np.stack([sample[alias] for alias in order])
        stacked_input = [to_tensor(matrix, TF_ENUM[matrix.dtype])]
    except Exception:  # noqa: BLE001 - a signature that cannot be wrapped keeps the flat call
        return None
    runner = _first_agreeing(_runners(concrete), stacked_input, expected)
    return None if runner is None else _stacked_call(runner)


def to_tensor(array: np.ndarray, dtype: int) -> Any:
    """Numeric arrays go straight to an EagerTensor (what tf.constant ends in, minus ~4 µs of dispatch
    per input, which adds up over 30 inputs per call); everything else takes tf.constant."""
    if dtype != types_pb2.DT_STRING and isinstance(array, np.ndarray) and NUMPY_DTYPE.get(dtype) == array.dtype:
        eager_tensor, context = eager()
        return eager_tensor(array, context().device_name, dtype)
    import tensorflow as tf

    if dtype == types_pb2.DT_STRING:
        return tf.constant(array, dtype=tf.string)
    return tf.constant(array)


_EAGER: tuple[Any, Any] | None = None


def _runners(concrete: Any) -> list[Callable[[list[Any]], Mapping[str, Any]]]:
    """Ways to call a concrete function with flat input tensors, fastest first: the runtime call, then
    ``_call_flat``. Both are private TF API; callers use the first that answers exactly as the public call."""
    runners: list[Callable[[list[Any]], Mapping[str, Any]]] = []
    runtime = _runtime_call(concrete)
    if runtime is not None:
        runners.append(runtime)
    if hasattr(concrete, "_call_flat") and hasattr(concrete, "captured_inputs"):
        runners.append(lambda flat: concrete._call_flat(flat, concrete.captured_inputs))
    return runners


def _first_agreeing(runners: list[Callable[[list[Any]], Mapping[str, Any]]], flat: list[Any],
                    expected: Mapping[str, np.ndarray]) -> Callable[[list[Any]], Mapping[str, Any]] | None:
    for runner in runners:
        try:
            got = {alias: tensor.numpy() for alias, tensor in runner(flat).items()}
        except Exception:  # noqa: BLE001 - this way of calling does not work for this function
            continue
        if expected.keys() == got.keys() and all(
            np.array_equal(expected[k], got[k], equal_nan=expected[k].dtype.kind == "f") for k in expected
        ):
            return runner
    return None


def _runtime_call(concrete: Any) -> Callable[[list[Any]], dict[str, Any]] | None:
    """A concrete function called the way ``ConcreteFunction._call_flat`` ends: its name and flat inputs
    straight to the eager context. The Python layers in between (tape checks, call options, output
    packing) cost ~100 us per call, a third of a small model's call, and they hold the GIL that the
    event loop needs. None unless every piece of this private API is there."""
    atomic = getattr(concrete, "_inference_function", None)
    outputs = getattr(concrete, "structured_outputs", None)
    try:
        name = atomic.name  # type: ignore[union-attr]
        count = len(atomic.function_type.flat_outputs)  # type: ignore[union-attr]
        captured = list(concrete.captured_inputs)
    except (AttributeError, TypeError):
        return None
    if not isinstance(outputs, dict) or not all(isinstance(k, str) for k in outputs) or len(outputs) != count:
        return None
    aliases = sorted(outputs)  # flat outputs follow the sorted keys of the output dict
    _, context = eager()

    def call(flat: list[Any]) -> dict[str, Any]:
        return dict(zip(aliases, context().call_function(name, flat + captured, count), strict=True))

    call.concrete = concrete  # type: ignore[attr-defined]  # keeps the function, and its runtime definition, alive
    return call


def _stacked_call(runner: Callable[[list[Any]], Mapping[str, Any]]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The stacked entry point: one array in (every input a row), numpy outputs out."""
    eager_tensor, context = eager()

    def call(matrix: np.ndarray) -> dict[str, np.ndarray]:
        tensors = runner([eager_tensor(matrix, context().device_name, TF_ENUM[matrix.dtype])])
        return {alias: tensor.numpy() for alias, tensor in tensors.items()}

    call.runner = runner  # type: ignore[attr-defined]
    return call


def eager() -> tuple[Any, Any]:
    """TensorFlow's EagerTensor constructor and context getter, imported once (TF loads lazily here)."""
    global _EAGER
    if _EAGER is None:
        from tensorflow.python.eager import context
        from tensorflow.python.framework import ops

        _EAGER = (ops.EagerTensor, context.context)
    return _EAGER


def _sample_input(dtype: int, shape: tuple[int, ...] | None, seed: int) -> np.ndarray:
    if shape is None or dtype not in NUMPY_DTYPE:
        raise ValueError("cannot build a sample")
    concrete = tuple(d if d >= 0 else 2 for d in shape)
    if dtype == types_pb2.DT_STRING:
        return np.full(concrete, b"", dtype=object)
    rng = np.random.default_rng(seed)
    if NUMPY_DTYPE[dtype].kind == "f":
        return rng.normal(size=concrete).astype(NUMPY_DTYPE[dtype])
    return np.ones(concrete, NUMPY_DTYPE[dtype])
