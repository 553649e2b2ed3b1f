"""Clients for TF Serving's REST and gRPC APIs (ours or a real tensorflow_model_server).

Both retry UNAVAILABLE (REST 503: batch queue full, server starting) with exponential backoff and
raise :class:`ServingClientError` with the server's status and message otherwise.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
import httpx
import numpy as np

from errors import EsteiraError

T = TypeVar("T")


class ServingClientError(EsteiraError):
    """The server answered with an error: ``code`` is the gRPC code name, ``status`` the HTTP status (REST)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


_HTTP_TO_CODE = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 409: "ABORTED", 413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
                 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def _retry(call: Callable[[], T], retries: int, backoff: float) -> T:
    for attempt in range(retries + 1):
        try:
            return call()
        except ServingClientError as exc:
            if exc.code != "UNAVAILABLE" or attempt == retries:
                raise
        time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


def _path(model: str, version: int | None, label: str | None) -> str:
    from urllib.parse import quote

    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label:
        path += f"/labels/{quote(label, safe='')}"
    return path


class RestClient:
    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.05, client_id: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if client_id:
            headers["X-Client-Id"] = client_id
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers)
        self.retries, self.backoff = retries, backoff

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        import json

        def once() -> Any:
            try:
                response = (self.http.request(method, path, json=body) if body is not None
                            else self.http.request(method, path))
            except httpx.TimeoutException as exc:
                raise ServingClientError("DEADLINE_EXCEEDED", f"no answer within the timeout: {exc}") from None
            except httpx.TransportError as exc:
                raise ServingClientError("UNAVAILABLE", f"cannot reach {self.http.base_url}: {exc}") from None
            try:
                document = json.loads(response.content) if response.content else {}
            except ValueError:
                document = {"error": response.text}
            if response.status_code != 200:
                message = document.get("error", response.text) if isinstance(document, dict) else response.text
                raise ServingClientError(_HTTP_TO_CODE.get(response.status_code, "UNKNOWN"), message,
                                         response.status_code)
            return document

        return _retry(once, self.retries, self.backoff)

    def predict(self, model: str, *, instances: Any = None, inputs: Any = None, signature: str | None = None,
                version: int | None = None, label: str | None = None) -> Any:
        body: dict[str, Any] = {"instances": instances} if inputs is None else {"inputs": inputs}
        if signature:
            body["signature_name"] = signature
        document = self._send("POST", _path(model, version, label) + ":predict", body)
        return document.get("predictions", document.get("outputs"))

    def classify(self, model: str, examples: Sequence[Mapping[str, Any]], *, signature: str | None = None,
                 version: int | None = None, label: str | None = None) -> Any:
        body: dict[str, Any] = {"examples": list(examples)}
        if signature:
            body["signature_name"] = signature
        return self._send("POST", _path(model, version, label) + ":classify", body)["results"]

    def regress(self, model: str, examples: Sequence[Mapping[str, Any]], *, signature: str | None = None,
                version: int | None = None, label: str | None = None) -> Any:
        body: dict[str, Any] = {"examples": list(examples)}
        if signature:
            body["signature_name"] = signature
        return self._send("POST", _path(model, version, label) + ":regress", body)["results"]

    def status(self, model: str, version: int | None = None) -> Any:
        return self._send("GET", _path(model, version, None))

    def metadata(self, model: str, version: int | None = None, label: str | None = None) -> Any:
        return self._send("GET", _path(model, version, label) + "/metadata")


class GrpcClient:
    def __init__(self, target: str, *, token: str | None = None, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.05, client_id: str | None = None) -> None:
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 2**31 - 1),
                                                              ("grpc.max_send_message_length", 2**31 - 1)])
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.metadata_pairs = tuple(
            ([("authorization", f"Bearer {token}")] if token else [])
            + ([("x-client-id", client_id)] if client_id else [])
        )
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: Callable[..., T], request: Any) -> T:
        def once() -> T:
            try:
                return method(request, timeout=self.timeout, metadata=self.metadata_pairs or None)
            except grpc.RpcError as exc:
                raise ServingClientError(exc.code().name, exc.details() or "") from None

        return _retry(once, self.retries, self.backoff)

    @staticmethod
    def _spec(spec: Any, model: str, version: int | None, label: str | None, signature: str | None) -> None:
        spec.name = model
        if version is not None:
            spec.version.value = int(version)
        elif label:
            spec.version_label = label
        if signature:
            spec.signature_name = signature

    def predict(self, model: str, inputs: Mapping[str, np.ndarray], *, signature: str | None = None,
                version: int | None = None, label: str | None = None,
                output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
        from tensorflow_serving.apis import predict_pb2

        from serving.protocol.tensors import from_proto, to_proto

        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        self._spec(request.model_spec, model, version, label, signature)
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(to_proto(np.asarray(value)))
        response = self.call(self.prediction.Predict, request)
        return {alias: from_proto(tensor, alias) for alias, tensor in response.outputs.items()}

    def predict_body(self, model: str, body: Mapping[str, Any], *, signature: str | None = None,
                     version: int | None = None, label: str | None = None) -> dict[str, Any]:
        """A TF Serving REST predict body (``instances`` or ``inputs``) sent over gRPC: decoded against the
        signature's inputs from GetModelMetadata; the outputs come back as JSON values."""
        from serving.protocol.input_spec import InputSpec
        from serving.protocol.json_codec import parse_predict_request

        spec, signature_map = self.metadata(model, version, label)
        key = signature or "serving_default"
        if key not in signature_map.signature_def:
            raise ServingClientError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
        parsed = parse_predict_request(dict(body), InputSpec.of(signature_map.signature_def[key]), key)
        assert parsed is not None  # None only with numeric_only=True
        tensors, _ = parsed
        outputs = self.predict(model, tensors, signature=key, version=version, label=label)
        return {"model_version": spec.version.value, "outputs": {k: _jsonable(v) for k, v in outputs.items()}}

    def _input(self, request: Any, examples: Sequence[Mapping[str, Any]]) -> None:
        from serving.protocol.json_codec import features_to_example

        for features in examples:
            request.input.example_list.examples.add().CopyFrom(features_to_example(dict(features)))

    def classify(self, model: str, examples: Sequence[Mapping[str, Any]], *, signature: str | None = None,
                 version: int | None = None, label: str | None = None) -> list[list[tuple[str, float]]]:
        from tensorflow_serving.apis import classification_pb2

        request = classification_pb2.ClassificationRequest()
        self._spec(request.model_spec, model, version, label, signature)
        self._input(request, examples)
        response = self.call(self.prediction.Classify, request)
        return [[(c.label, c.score) for c in item.classes] for item in response.result.classifications]

    def regress(self, model: str, examples: Sequence[Mapping[str, Any]], *, signature: str | None = None,
                version: int | None = None, label: str | None = None) -> list[float]:
        from tensorflow_serving.apis import regression_pb2

        request = regression_pb2.RegressionRequest()
        self._spec(request.model_spec, model, version, label, signature)
        self._input(request, examples)
        response = self.call(self.prediction.Regress, request)
        return [r.value for r in response.result.regressions]

    def status(self, model: str, version: int | None = None) -> Any:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, model, version, None, None)
        return self.call(self.models.GetModelStatus, request)

    def metadata(self, model: str, version: int | None = None, label: str | None = None) -> Any:
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, model, version, label, None)
        response = self.call(self.prediction.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return response.model_spec, signature_map

    def reload(self, config: Any) -> None:
        from tensorflow_serving.apis import model_management_pb2

        request = model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(config)
        response = self.call(self.models.HandleReloadConfigRequest, request)
        if response.status.error_code != 0:
            name = next((c.name for c in grpc.StatusCode if c.value[0] == response.status.error_code), "UNKNOWN")
            raise ServingClientError(name, response.status.error_message)


def _jsonable(array: Any) -> Any:
    array = np.asarray(array)
    if array.dtype == object:
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array.ravel()]
    return array.tolist()
