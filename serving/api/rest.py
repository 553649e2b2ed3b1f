"""TF Serving's REST API (``/v1/models/...``), plus metrics and Kubernetes probe endpoints."""
from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import unquote

from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from serving.api.asgi import Request, Response
from serving.api.explain import decision_threshold, explain_rest
from serving.api.grpc_service import fill_classifications, fill_spec
from serving.api.service import Call, Service
from serving.observability.feedback import parse_feedback, request_id
from serving.observability.metrics import CONTENT_TYPE
from serving.protocol import json_codec
from serving.protocol.errors import Code, ServingError
from serving.protocol.tensors import to_proto

_POST = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict|explain)")
_GET = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:\/(metadata))?")
_FEEDBACK = re.compile(r"(?i)/v1/models/([^/:]+)/feedback")
_V1 = re.compile(r"(?i)/v1/.*")
NOT_FOUND_HTML = b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"
INT64_MAX = 2**63 - 1


def _error(exc: ServingError) -> Response:
    return Response(exc.http_status, json_codec.write_error(exc.message))


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    value = int(text)
    if value > INT64_MAX:
        raise ServingError(Code.INVALID_ARGUMENT, f"Failed to convert version: {text} to numeric.")
    return value


class RestApi:
    def __init__(self, service: Service, *, metrics_path: str | None, cors: bool = False) -> None:
        self.service = service
        self.metrics_path = metrics_path
        self.cors = cors

    async def __call__(self, request: Request) -> Response:
        path = request.target.split("?", 1)[0]
        if self.metrics_path is not None and path == self.metrics_path:
            return self._metrics(request)
        if path in ("/healthz", "/readyz"):
            return self._probe(request, path)
        if request.method == "OPTIONS":
            origin = request.headers.get("origin", "")
            ok = "http://" in origin or "https://" in origin
            self.service.metrics.request_count.inc(("", "OK" if ok else "INVALID_ARGUMENT", ""))
            return Response(200 if ok else 400, b"", content_type="text/html; charset=ISO-8859-1")
        if not _V1.fullmatch(path):
            return Response(404, NOT_FOUND_HTML, content_type="text/html", close=True)
        response, _model, _api = await self._v1(request, path)
        if self.cors:
            response.headers = (
                *response.headers, ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Methods", "POST, GET"), ("Access-Control-Allow-Headers", "Content-Type"))
        return response

    # ---- auxiliary endpoints -----------------------------------------------------------------

    def _authorized(self, request: Request, protected: bool) -> bool:
        auth = self.service.auth
        return auth is None or not protected or auth.caller(request.headers.get("authorization")) is not None

    def _metrics(self, request: Request) -> Response:
        auth = self.service.auth
        if not self._authorized(request, auth is not None and auth.protect_metrics):
            return Response(401, json_codec.write_error("Missing or invalid bearer token"),
                            headers=(("WWW-Authenticate", "Bearer"),))
        return Response(200, self.service.metrics.render(), content_type=CONTENT_TYPE)

    def _probe(self, request: Request, path: str) -> Response:
        auth = self.service.auth
        if not self._authorized(request, auth is not None and auth.protect_probes):
            return Response(401, json_codec.write_error("Missing or invalid bearer token"),
                            headers=(("WWW-Authenticate", "Bearer"),))
        if path == "/healthz":
            return Response(200, b'{"status": "alive"}')
        missing = self.service.backend.not_ready()
        if missing:
            body = json.dumps({"status": "not ready", "models_without_available_version": missing}).encode()
            return Response(503, body)
        return Response(200, b'{"status": "ready"}')

    # ---- /v1 ---------------------------------------------------------------------------------

    async def _v1(self, request: Request, path: str) -> tuple[Response, str, str]:
        started = time.perf_counter()
        service = self.service
        call = Call("REST", "", started=started, request_bytes=len(request.body))
        tf_api = ""
        try:
            if request.method == "POST" and (match := _POST.fullmatch(path)):
                name, version, label, verb = match.groups()
                if verb not in ("predict", "classify", "regress", "explain"):  # (?i) matched an upper-case verb
                    raise ServingError(Code.INVALID_ARGUMENT, f"Malformed request: {request.method} {path}")
                call.api = tf_api = verb
                call.model = unquote(name)
                self._authenticate(request, call)
                call.request_id = request_id(request.headers.get("x-request-id"))
                body = await self._inference(call, verb, _version(version), unquote(label) if label else None, request)
            elif request.method == "POST" and (match := _FEEDBACK.fullmatch(path)):
                call.api = "feedback"
                call.model = unquote(match.group(1))
                self._authenticate(request, call)
                body = self._feedback(call, request.body)
            elif request.method == "GET" and (match := _GET.fullmatch(path)):
                name, version, label, metadata = match.groups()
                call.api = "metadata" if metadata else "status"
                call.model = unquote(name) if name else ""
                self._authenticate(request, call)
                if not name:
                    raise ServingError(Code.INVALID_ARGUMENT, "Missing model name in request.")
                if metadata:
                    body = await self._metadata(call, _version(version), unquote(label) if label else None)
                else:
                    body = await self._status(call, _version(version))
            else:
                raise ServingError(Code.INVALID_ARGUMENT, f"Malformed request: {request.method} {path}")
            response = Response(200, body)
        except ServingError as exc:
            call.code = exc.code_name
            response = _error(exc)
            if exc.code is Code.UNAUTHENTICATED:
                response.headers = (("WWW-Authenticate", "Bearer"),)
        if call.request_id:
            response.headers = (*response.headers, ("X-Request-Id", call.request_id))
        call.response_bytes = len(response.body)
        service.metrics.request_count.inc((call.model, call.code, call.version))
        if call.code == "OK":
            service.metrics.request_latency.observe((call.model, tf_api, "REST", call.version),
                                                    (time.perf_counter() - started) * 1e6)
        if (refused := service.finish(call)) is not None:  # no audit line could be written (--audit_required)
            response = _error(refused)
        return response, call.model, call.api

    def _authenticate(self, request: Request, call: Call) -> None:
        auth = self.service.auth
        if auth is None:
            return
        caller = auth.caller(request.headers.get("authorization"))
        if caller is None:
            self.service.metrics.auth_failures.inc(("REST",))
            raise ServingError(Code.UNAUTHENTICATED,
                               "Missing or invalid bearer token; send 'Authorization: Bearer <token>'")
        call.caller = caller

    async def _inference(self, call: Call, verb: str, version: int | None, label: str | None,
                         request: Request) -> bytes:
        service = self.service
        if verb == "explain":  # the decision, its attributions and reasons (serving/api/explain.py)
            return await explain_rest(service, call, version, label, request.body, request.headers)
        body = json_codec.InferenceBody(request.body, verb)
        signature_name = body.signature_name
        client_id = request.headers.get("x-client-id")
        handle = await service.resolve(call.model, version, label, client_id)
        call.version = str(handle.version)
        if verb == "predict":
            key = signature_name or "serving_default"
            definition = handle.signatures.get(key)
            if definition is None or key == "__saved_model_init_op":
                raise ServingError(Code.INVALID_ARGUMENT, f'Serving signature name: "{key}" not found in signature def')
            inputs, row_format = body.predict_inputs(handle.input_spec(key), key, lambda: {
                name: list(handle.input_spec(name)) for name in handle.signatures if not name.startswith("__")})
            outputs, served = await service.bounded(service.backend.predict(handle, key, inputs))
            call.version = str(served)
            service.count_classes(call.model, served, outputs, call.request_id, decision_threshold(handle), inputs, key)
            service.log_request(call, key, lambda: predict_log(call.model, version, label, key, inputs, outputs,
                                                               handle.signatures[key], served))
            if row_format:
                return json_codec.write_row_predictions(outputs)
            return json_codec.write_columnar_outputs(outputs)
        examples = body.examples()
        if verb == "classify":
            results, served = await service.bounded(service.backend.classify(handle, signature_name, examples))
            call.version = str(served)
            service.count_classifications(call.model, served, results)
            service.log_request(call, signature_name, lambda: examples_log(
                "classify", call.model, version, label, signature_name, examples, served, results))
            return json_codec.write_classify_results(results)
        values, served = await service.bounded(service.backend.regress(handle, signature_name, examples))
        call.version = str(served)
        service.log_request(call, signature_name, lambda: examples_log(
            "regress", call.model, version, label, signature_name, examples, served, values))
        return json_codec.write_regress_results(values)

    def _feedback(self, call: Call, body: bytes) -> bytes:
        """Labels joined to remembered predictions; a malformed body counts nothing (400)."""
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ServingError(Code.INVALID_ARGUMENT, f"Feedback body is not valid JSON ({exc}); "
                               'send {"feedback": [{"request_id": "<id>", "label": <class index>}, ...]}') from None
        items = parse_feedback(document)
        results = [self.service.memory.join(call.model, item.request_id, item.row, item.label) for item in items]
        counted = sum(1 for result in results if result["status"] == "counted")
        return json.dumps({"counted": counted, "unmatched": len(results) - counted, "results": results}).encode()

    async def _status(self, call: Call, version: int | None) -> bytes:
        response = await self.service.backend.status(call.model, version)
        text = json_format.MessageToJson(response, indent=1, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
        return (text + "\n").encode()

    async def _metadata(self, call: Call, version: int | None, label: str | None) -> bytes:
        handle = await self.service.backend.resolve(call.model, version, label)
        call.version = str(handle.version)
        spec = model_pb2.ModelSpec(name=call.model)
        spec.version.value = handle.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, definition in handle.signatures.items():
            signature_map.signature_def[key].CopyFrom(definition)
        options: dict[str, Any] = {"indent": 1, "preserving_proto_field_name": True,
                                   "always_print_fields_with_no_presence": True}
        return (
            '{\n"model_spec":' + json_format.MessageToJson(spec, **options) + '\n,\n"metadata": {"signature_def": '
            + json_format.MessageToJson(signature_map, **options) + "\n}\n}\n"
        ).encode()


# ---- request log records (built on the log's writer thread, only for sampled requests) -------

def _request_spec(spec: Any, model: str, version: int | None, label: str | None, signature: str) -> None:
    """The ModelSpec as the REST path addressed it, so a replay over gRPC asks for the same version."""
    spec.name = model
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label
    spec.signature_name = signature


def predict_log(model: str, version: int | None, label: str | None, signature: str, inputs: Any, outputs: Any,
                definition: Any, served: int) -> prediction_log_pb2.PredictionLog:
    """A REST Predict as the PredictRequest/PredictResponse a gRPC client would have exchanged."""
    request = predict_pb2.PredictRequest()
    _request_spec(request.model_spec, model, version, label, signature)
    for alias in inputs:
        request.inputs[alias].CopyFrom(to_proto(inputs[alias], definition.inputs[alias].dtype))
    response = predict_pb2.PredictResponse()
    fill_spec(response.model_spec, model, served, signature)
    for alias, value in outputs.items():
        info = definition.outputs.get(alias)
        response.outputs[alias].CopyFrom(to_proto(value, info.dtype if info is not None else None))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request, response=response))


def examples_log(verb: str, model: str, version: int | None, label: str | None, signature: str, examples: list,
                 served: int, results: list) -> prediction_log_pb2.PredictionLog:
    """A REST Classify or Regress as its gRPC request and response (tf.Example inputs)."""
    if verb == "classify":
        request: Any = classification_pb2.ClassificationRequest()
        response: Any = classification_pb2.ClassificationResponse()
        fill_classifications(response.result, results)
    else:
        request = regression_pb2.RegressionRequest()
        response = regression_pb2.RegressionResponse()
        response.result.regressions.extend(regression_pb2.Regression(value=v) for v in results)
    _request_spec(request.model_spec, model, version, label, signature)
    for raw in examples:
        request.input.example_list.examples.add().ParseFromString(raw)
    fill_spec(response.model_spec, model, served, signature)
    if verb == "classify":
        return prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=request, response=response))
    return prediction_log_pb2.PredictionLog(
        regress_log=prediction_log_pb2.RegressLog(request=request, response=response))
