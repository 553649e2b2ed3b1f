"""Gateway backend: inference runs on a TF Serving (or another Esteira) behind us, over gRPC.

Auth, access audit, metrics and canary routing stay in front. Requests are forwarded with the
version or label the client (or the canary router) chose, so the remote server resolves versions
itself and a swap there never makes a request fail here. Signatures are read with
GetModelMetadata (cached briefly) to decode REST JSON with the right dtypes.
"""
from __future__ import annotations

import time
from typing import Mapping, Sequence

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2, get_model_metadata_pb2, get_model_status_pb2, model_management_pb2,
    model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc, regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from serving.backends import Handle
from serving.protocol.errors import ServingError, code_from_number
from serving.observability.metrics import Registry
from serving.protocol.tensors import from_proto, to_proto

METADATA_TTL_SECONDS = 2.0


def _error(exc: grpc.aio.AioRpcError) -> ServingError:
    return ServingError(exc.code(), exc.details() or "")


class RemoteBackend:
    def __init__(self, target: str, *, metrics: Registry, model_config_file: str | None = None,
                 timeout: float = 30.0) -> None:
        self.target = target
        self.metrics = metrics
        self.timeout = timeout
        self.model_config_file = model_config_file
        self._channel: grpc.aio.Channel | None = None
        self._cache: dict[tuple, tuple[float, Handle]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        if model_config_file:
            from serving.config import read_model_config

            self._remember_labels(read_model_config(model_config_file))

    def _remember_labels(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        self._labels = {m.name: dict(m.version_labels) for m in config.model_config_list.config}

    def _stubs(self) -> tuple[prediction_service_pb2_grpc.PredictionServiceStub, model_service_pb2_grpc.ModelServiceStub]:
        if self._channel is None:  # created lazily, inside the serving event loop
            self._channel = grpc.aio.insecure_channel(self.target, options=[
                ("grpc.max_receive_message_length", 2**31 - 1), ("grpc.max_send_message_length", 2**31 - 1)])
            self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
            self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        return self._prediction, self._models

    @staticmethod
    def _fill(spec, name: str, version: int | None, label: str | None, signature: str = "") -> None:  # type: ignore[no-untyped-def]
        spec.name = name
        if version is not None:
            spec.version.value = version
        elif label is not None:
            spec.version_label = label
        if signature:
            spec.signature_name = signature

    async def resolve(self, name: str, version: int | None, label: str | None) -> Handle:
        key = (name, version, label)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < METADATA_TTL_SECONDS:
            return cached[1]
        prediction, _ = self._stubs()
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._fill(request.model_spec, name, version, label)
        try:
            response = await prediction.GetModelMetadata(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        handle = Handle(name, response.model_spec.version.value, dict(signature_map.signature_def), version, label)
        self._cache[key] = (now, handle)
        return handle

    async def predict(self, handle: Handle, signature: str, inputs: Mapping[str, np.ndarray],
                      output_filter: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], int]:
        prediction, _ = self._stubs()
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        self._fill(request.model_spec, handle.model, handle.requested_version, handle.requested_label, signature)
        definition = handle.signatures.get(signature)
        dtypes = {a: i.dtype for a, i in definition.inputs.items()} if definition is not None else {}
        for alias, array in inputs.items():
            request.inputs[alias].CopyFrom(to_proto(array, dtypes.get(alias)))
        try:
            response = await prediction.Predict(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        return {a: from_proto(t, a) for a, t in response.outputs.items()}, response.model_spec.version.value

    def _examples_request(self, request, handle: Handle, signature: str, examples: Sequence[bytes]) -> None:  # type: ignore[no-untyped-def]
        self._fill(request.model_spec, handle.model, handle.requested_version, handle.requested_label, signature)
        for raw in examples:
            request.input.example_list.examples.add().ParseFromString(raw)

    async def classify(self, handle: Handle, signature: str, examples: Sequence[bytes]) -> tuple[list, int]:
        prediction, _ = self._stubs()
        request = classification_pb2.ClassificationRequest()
        self._examples_request(request, handle, signature, examples)
        try:
            response = await prediction.Classify(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        results = [[(c.label.encode(), c.score) for c in item.classes] for item in response.result.classifications]
        return results, response.model_spec.version.value

    async def regress(self, handle: Handle, signature: str, examples: Sequence[bytes]) -> tuple[list[float], int]:
        prediction, _ = self._stubs()
        request = regression_pb2.RegressionRequest()
        self._examples_request(request, handle, signature, examples)
        try:
            response = await prediction.Regress(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        return [r.value for r in response.result.regressions], response.model_spec.version.value

    async def status(self, name: str, version: int | None) -> get_model_status_pb2.GetModelStatusResponse:
        _, models = self._stubs()
        request = get_model_status_pb2.GetModelStatusRequest()
        self._fill(request.model_spec, name, version, None)
        try:
            return await models.GetModelStatus(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None

    async def reload(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        _, models = self._stubs()
        request = model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(config)
        try:
            response = await models.HandleReloadConfigRequest(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        if response.status.error_code:
            raise ServingError(code_from_number(response.status.error_code), response.status.error_message)
        self._remember_labels(config)
        self._cache.clear()

    def labels(self, name: str) -> dict[str, int]:
        return dict(self._labels.get(name, {}))

    def model_names(self) -> list[str]:
        return sorted(self._labels)

    def not_ready(self) -> list[str]:
        return []  # readiness of the remote is the remote's own probe

    def close(self) -> None:
        self._channel = None
