"""Gateway backend: inference runs on a TF Serving (or another Esteira) behind us, over gRPC.

Auth, access audit, metrics and canary routing stay in front. Requests are forwarded with the
version or label the client (or the canary router) chose, so the remote server resolves versions
itself and a swap there never makes a request fail here. Signatures are read with
GetModelMetadata (cached briefly) to decode REST JSON with the right dtypes. With ``RemoteTls`` the
connection is TLS (mTLS with a client certificate), and a new channel is made when those files change.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from serving.backends import Handle
from serving.observability.metrics import Registry
from serving.protocol.errors import ServingError, code_from_number
from serving.protocol.tensors import from_proto, to_proto
from serving.servables.model_facts import ModelFacts, read_model_facts

METADATA_TTL_SECONDS = 2.0
TLS_CHECK_SECONDS = 1.0  # how often the TLS files are looked at (a stat each)


@dataclass(frozen=True)
class RemoteTls:
    """PEM files for the connection to the server behind: the CA that signs its certificate (else the system's
    roots) and, for its mTLS (``client_verify``), our client certificate chain and key."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @classmethod
    def from_flags(cls, ca_file: str, cert_file: str, key_file: str) -> RemoteTls | None:
        if not (ca_file or cert_file or key_file):
            return None
        tls = cls(ca_file, cert_file, key_file)
        tls.credentials()  # an unreadable file is a startup error, not a failing first request
        return tls

    def _files(self) -> list[tuple[str, str]]:
        return [(flag, path) for flag, path in (("--remote_backend_ca_file", self.ca_file),
                                                 ("--remote_backend_cert_file", self.cert_file),
                                                 ("--remote_backend_key_file", self.key_file)) if path]

    def fingerprint(self) -> tuple:
        """What changes when a file is replaced (a Kubernetes Secret update swaps a symlink)."""
        marks: list[tuple[int, int, int] | None] = []
        for _flag, path in self._files():
            try:
                found = os.stat(path)
                marks.append((found.st_ino, found.st_mtime_ns, found.st_size))
            except OSError:
                marks.append(None)
        return tuple(marks)

    def credentials(self) -> grpc.ChannelCredentials:
        pem: dict[str, bytes | None] = {}
        for flag, path in self._files():
            try:
                with open(path, "rb") as handle:
                    pem[flag] = handle.read()
            except OSError as exc:
                raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                   f"cannot read {flag}={path} ({exc.strerror}); check the path") from None
        return grpc.ssl_channel_credentials(root_certificates=pem.get("--remote_backend_ca_file"),
                                            private_key=pem.get("--remote_backend_key_file"),
                                            certificate_chain=pem.get("--remote_backend_cert_file"))


def _error(exc: grpc.aio.AioRpcError) -> ServingError:
    return ServingError(exc.code(), exc.details() or "")


class RemoteBackend:
    def __init__(self, target: str, *, metrics: Registry, model_config_file: str | None = None,
                 timeout: float = 30.0, tls: RemoteTls | None = None) -> None:
        self.target = target
        self.tls = tls
        self._tls_seen: tuple | None = tls.fingerprint() if tls is not None else None
        self._tls_checked = time.monotonic()
        self.metrics = metrics
        self.timeout = timeout
        self.model_config_file = model_config_file
        self._channel: grpc.aio.Channel | None = None
        self._cache: dict[tuple, tuple[float, Handle]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._base_paths: dict[str, str] = {}
        self._facts: dict[tuple[str, int], ModelFacts] = {}
        if model_config_file:
            from serving.config import read_model_config

            self._remember_config(read_model_config(model_config_file))

    def _remember_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        self._labels = {m.name: dict(m.version_labels) for m in config.model_config_list.config}
        self._base_paths = {m.name: m.base_path for m in config.model_config_list.config if m.base_path}

    def _version_facts(self, name: str, version: int) -> ModelFacts | None:
        """The remote version's own facts (decision threshold, reason texts) from its folder, read once per
        version: the gateway then counts classes and words reasons as the server that loaded it does."""
        base_path = self._base_paths.get(name)
        if base_path is None:
            return None
        key = (name, version)
        if key not in self._facts:
            self._facts[key] = read_model_facts(Path(base_path) / str(version))
        return self._facts[key]

    def _stubs(self) -> tuple[prediction_service_pb2_grpc.PredictionServiceStub,
                              model_service_pb2_grpc.ModelServiceStub]:
        due = time.monotonic() - self._tls_checked > TLS_CHECK_SECONDS
        if self.tls is not None and self._channel is not None and due:
            self._tls_checked = time.monotonic()
            seen = self.tls.fingerprint()
            if seen != self._tls_seen:  # new certificates: new calls on a new channel, calls in flight finish
                self._tls_seen = seen
                old, self._channel = self._channel, None
                asyncio.get_running_loop().call_later(self.timeout, lambda: asyncio.ensure_future(old.close()))
        if self._channel is None:  # created lazily, inside the serving event loop
            options = [("grpc.max_receive_message_length", 2**31 - 1), ("grpc.max_send_message_length", 2**31 - 1)]
            if self.tls is not None:
                self._channel = grpc.aio.secure_channel(self.target, self.tls.credentials(), options=options)
            else:
                self._channel = grpc.aio.insecure_channel(self.target, options=options)
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
        served = response.model_spec.version.value
        handle = Handle(name, served, dict(signature_map.signature_def), version, label,
                        facts=self._version_facts(name, served))
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
        self._remember_config(config)
        self._cache.clear()

    def labels(self, name: str) -> dict[str, int]:
        return dict(self._labels.get(name, {}))

    def model_names(self) -> list[str]:
        return sorted(self._labels)

    def not_ready(self) -> list[str]:
        return []  # readiness of the remote is the remote's own probe

    def close(self) -> None:
        self._channel = None
