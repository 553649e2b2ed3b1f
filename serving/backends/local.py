"""In-process backend: the ModelManager's SavedModels, run in worker threads, optionally batched."""
from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.backends import Handle, LocalPin
from serving.backends.batching import Batcher
from serving.config import BatchingParameters
from serving.core.manager import ModelManager
from serving.protocol.errors import Code, ServingError, invalid_argument
from serving.protocol.tensors import StackedInputs
from serving.servables.signature import DEFAULT_SIGNATURE, ShapeMismatch, Signature, check_inputs


class LocalBackend:
    def __init__(self, manager: ModelManager, *, batching: BatchingParameters | None = None,
                 threads: int | None = None) -> None:
        self.manager = manager
        self.executor = ThreadPoolExecutor(max_workers=threads or max(4, 2 * (__import__("os").cpu_count() or 1)),
                                           thread_name_prefix="inference")
        self.batcher = Batcher(batching, self.executor, manager.metrics) if batching is not None else None

    async def resolve(self, name: str, version: int | None, label: str | None) -> Handle:
        found = self.manager.resolve(name, version, label)
        servable = found.servable
        if servable is None:  # unloaded between resolve and here
            raise ServingError(Code.NOT_FOUND, f"Servable not found for request: Specific({name}, {found.number})")
        definitions = getattr(servable, "definitions", None)
        if definitions is None:
            definitions = {k: s.definition for k, s in servable.signatures.items()}
        # The handle pins the version's signatures and loaded model (see LocalPin).
        return Handle(name, found.number, definitions, version, label,
                      local=LocalPin(servable, found.drift, servable.signatures, getattr(servable, "_model", None)))

    @staticmethod
    def _pin(handle: Handle) -> LocalPin:
        if handle.local is None:
            raise TypeError("a handle from another backend")  # a programming error, never a client's
        return handle.local

    async def predict(self, handle: Handle, signature: str, inputs: Mapping[str, np.ndarray],
                      output_filter: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], int]:
        servable, drift, signatures, _model = self._pin(handle)
        sig = _pinned_signature(signatures, signature)
        check_output_filter(sig, output_filter)
        try:
            check_inputs(sig, inputs)
        except ShapeMismatch:  # TF Serving feeds the graph and lets it decide; alone, never in a batch
            outputs: Mapping[str, np.ndarray] = await asyncio.get_running_loop().run_in_executor(
                self.executor, servable.feed_graph, sig, inputs)
            return {alias: outputs[alias] for alias in output_filter or outputs}, handle.version

        def run(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            outputs = servable.predict(sig, batch, checked=True)  # each request was checked above
            if drift is not None:
                observe_inputs(drift, sig, batch)
            return outputs

        loop = asyncio.get_running_loop()
        if self.batcher is not None:
            outputs = await self.batcher.submit((handle.model, handle.version, sig.name), run, inputs,
                                                same_shapes=sig.fixed_inner_shapes)
        else:
            outputs = await loop.run_in_executor(self.executor, run, inputs)
        if output_filter:
            outputs = {alias: outputs[alias] for alias in output_filter}
        return dict(outputs), handle.version

    async def classify(self, handle: Handle, signature: str, examples: Sequence[bytes]) -> tuple[list, int]:
        servable, drift, signatures, _model = self._pin(handle)
        sig = _examples_signature(signatures, signature)

        def run() -> list:
            result = servable.classify(sig, examples)
            if drift is not None:
                drift.observe_examples(np.asarray(examples, dtype=object))
            return result

        return await asyncio.get_running_loop().run_in_executor(self.executor, run), handle.version

    async def regress(self, handle: Handle, signature: str, examples: Sequence[bytes]) -> tuple[list[float], int]:
        servable, drift, signatures, _model = self._pin(handle)
        sig = _examples_signature(signatures, signature)

        def run() -> list[float]:
            result = servable.regress(sig, examples)
            if drift is not None:
                drift.observe_examples(np.asarray(examples, dtype=object))
            return result

        return await asyncio.get_running_loop().run_in_executor(self.executor, run), handle.version

    async def status(self, name: str, version: int | None) -> get_model_status_pb2.GetModelStatusResponse:
        return self.manager.status(name, version)

    async def reload(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.manager.reload, config)

    def labels(self, name: str) -> dict[str, int]:
        return self.manager.labels(name)

    def model_names(self) -> list[str]:
        return self.manager.model_names()

    def not_ready(self) -> list[str]:
        return self.manager.not_ready()

    def close(self) -> None:
        self.manager.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)


def _pinned_signature(signatures: Mapping[str, Signature], name: str) -> Signature:
    """SavedModelServable.signature() against the signatures pinned at resolve time."""
    signature = signatures.get(name or DEFAULT_SIGNATURE)
    if signature is None or signature.function is None:
        raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{name or DEFAULT_SIGNATURE}" not found.')
    return signature


def _examples_signature(signatures: Mapping[str, Signature], name: str) -> Signature:
    signature = signatures.get(name or DEFAULT_SIGNATURE)
    if signature is None or signature.function is None:
        raise invalid_argument(f"No signature was found with the name: {name or DEFAULT_SIGNATURE}")
    return signature


def check_output_filter(signature: Signature, output_filter: Sequence[str]) -> None:
    seen = set()
    outputs = signature.definition.outputs
    for alias in output_filter:
        if alias not in outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} "
                f"Outputs expected to be in the set {{{','.join(sorted(outputs))}}}."
            )
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)


def observe_inputs(drift, signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    """Float/int inputs are features by alias; a single string input is taken as serialized tf.Example."""
    if type(inputs) is StackedInputs and inputs.matrix.dtype.kind in "fiu":
        drift.observe(inputs)  # kept as one array until the monitor buckets in bulk
        return
    numeric = {a: v for a, v in inputs.items() if v.dtype.kind in "fiu"}
    if numeric:
        drift.observe(numeric)
    elif len(inputs) == 1:
        (alias, array), = inputs.items()
        if signature.definition.inputs[alias].dtype == types_pb2.DT_STRING:
            drift.observe_examples(array)
