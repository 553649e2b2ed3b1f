"""TF Serving's gRPC services (PredictionService, ModelService) on grpc.aio, same codes and messages."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving.api.explain import EXPLAIN_SIGNATURE, check_rows, decision_threshold, model_facts, reason_outputs
from serving.api.service import Call, Service
from serving.observability.feedback import request_id
from serving.protocol.errors import Code, ServingError, invalid_argument
from serving.protocol.tensors import from_proto, stack_predict_inputs, stack_uniform, to_proto
from serving.servables.warmup import examples_from_input

INFERENCE_APIS = frozenset({"predict", "classify", "regress", "multi_inference"})  # each answers with a request id


def metadata_of(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return dict(context.invocation_metadata() or ())


def _spec(model_spec: Any) -> tuple[str, int | None, str | None]:
    if not model_spec.name:
        raise invalid_argument("ModelSpec has no name specified.")
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
        return model_spec.name, model_spec.version.value, None
    if choice == "version_label":
        return model_spec.name, None, model_spec.version_label
    return model_spec.name, None, None


class _Base:
    def __init__(self, service: Service, tensor_content: bool = False) -> None:
        self.service = service
        self.tensor_content = tensor_content

    async def _run(self, api: str, tf_api: str | None, request: Any, context: grpc.aio.ServicerContext,
                   work: Callable[[Call], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        service = self.service
        call = Call("GRPC", api, started=started, request_bytes=request.ByteSize())
        spec = getattr(request, "model_spec", None)
        call.model = spec.name if spec is not None else ""
        try:
            metadata = dict(context.invocation_metadata() or ())
            if service.auth is not None:
                caller = service.auth.caller(metadata.get("authorization"))
                if caller is None:
                    service.metrics.auth_failures.inc(("GRPC",))
                    raise ServingError(Code.UNAUTHENTICATED,
                                       "Missing or invalid bearer token; send metadata 'authorization: Bearer <token>'")
                call.caller = caller
            call.client_id = metadata.get("x-client-id")  # type: ignore[attr-defined]
            if api in INFERENCE_APIS:
                call.request_id = request_id(metadata.get("x-request-id"))
                context.set_trailing_metadata((("x-request-id", call.request_id),))
            if spec is not None and request.HasField("model_spec") is False and api != "reload":
                raise invalid_argument("Missing ModelSpec")
            timeout = context.time_remaining()
            response = await service.bounded(work(call), timeout if timeout is not None and timeout > 0 else None)
            call.response_bytes = response.ByteSize()
        except ServingError as exc:
            call.code = exc.code_name
            self._account(call, tf_api, started)
            await context.abort(exc.code, exc.grpc_message)
        if (refused := self._account(call, tf_api, started)) is not None:  # no audit line (--audit_required)
            await context.abort(refused.code, refused.grpc_message)
        return response

    def _account(self, call: Call, tf_api: str | None, started: float) -> ServingError | None:
        metrics = self.service.metrics
        if tf_api is not None:
            metrics.request_count.inc((call.model, call.code, call.version))
            if call.code == "OK":
                metrics.request_latency.observe((call.model, tf_api, "GRPC", call.version),
                                                (time.perf_counter() - started) * 1e6)
        return self.service.finish(call)


class PredictionServicer(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request: predict_pb2.PredictRequest,
                      context: grpc.aio.ServicerContext) -> predict_pb2.PredictResponse:
        async def work(call: Call) -> predict_pb2.PredictResponse:
            name, version, label = _spec(request.model_spec)
            client_id = request.client_id if request.HasField("client_id") else getattr(call, "client_id", None)
            handle = await self.service.resolve(name, version, label, client_id)
            call.version = str(handle.version)
            signature = request.model_spec.signature_name or "serving_default"
            if signature not in handle.signatures or signature == "__saved_model_init_op":
                raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{signature}" not found.')
            inputs: Mapping[str, np.ndarray] | None = stack_predict_inputs(request)
            if inputs is None:
                inputs = stack_uniform({alias: from_proto(tensor, alias) for alias, tensor in request.inputs.items()})
            if signature == EXPLAIN_SIGNATURE:  # bounded rows; the audit line names the prediction explained
                call.api, call.explains = "explain", request_id(metadata_of(context).get("x-explains-request-id")
                                                                 or call.request_id)
                check_rows(inputs)
            outputs, served = await self.service.backend.predict(handle, signature, inputs, list(request.output_filter))
            call.version = str(served)
            if signature == EXPLAIN_SIGNATURE and not request.output_filter:
                outputs = {**outputs, **reason_outputs(outputs, model_facts(handle))}
            else:
                self.service.count_classes(name, served, outputs, call.request_id, decision_threshold(handle), inputs,
                                           signature)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = name
            response.model_spec.version.value = served
            response.model_spec.signature_name = signature
            dtypes = {alias: info.dtype for alias, info in handle.signatures[signature].outputs.items()}
            for alias, value in outputs.items():
                response.outputs[alias].CopyFrom(to_proto(np.asarray(value), dtypes.get(alias),
                                                          use_tensor_content=self.tensor_content))
            self.service.log_request(call, signature, lambda: prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request, response=response)))
            return response

        return await self._run("predict", "Predict", request, context, work)

    async def Classify(self, request: classification_pb2.ClassificationRequest,
                       context: grpc.aio.ServicerContext) -> classification_pb2.ClassificationResponse:
        async def work(call: Call) -> classification_pb2.ClassificationResponse:
            name, version, label = _spec(request.model_spec)
            handle = await self.service.resolve(name, version, label, getattr(call, "client_id", None))
            call.version = str(handle.version)
            results, served = await self.service.backend.classify(
                handle, request.model_spec.signature_name, examples_from_input(request.input))
            call.version = str(served)
            self.service.count_classifications(name, served, results)
            response = classification_pb2.ClassificationResponse()
            fill_spec(response.model_spec, name, served, request.model_spec.signature_name)
            fill_classifications(response.result, results)
            self.service.log_request(call, request.model_spec.signature_name, lambda: prediction_log_pb2.PredictionLog(
                classify_log=prediction_log_pb2.ClassifyLog(request=request, response=response)))
            return response

        return await self._run("classify", "Classify", request, context, work)

    async def Regress(self, request: regression_pb2.RegressionRequest,
                      context: grpc.aio.ServicerContext) -> regression_pb2.RegressionResponse:
        async def work(call: Call) -> regression_pb2.RegressionResponse:
            name, version, label = _spec(request.model_spec)
            handle = await self.service.resolve(name, version, label, getattr(call, "client_id", None))
            call.version = str(handle.version)
            values, served = await self.service.backend.regress(
                handle, request.model_spec.signature_name, examples_from_input(request.input))
            call.version = str(served)
            response = regression_pb2.RegressionResponse()
            fill_spec(response.model_spec, name, served, request.model_spec.signature_name)
            response.result.regressions.extend(regression_pb2.Regression(value=v) for v in values)
            self.service.log_request(call, request.model_spec.signature_name, lambda: prediction_log_pb2.PredictionLog(
                regress_log=prediction_log_pb2.RegressLog(request=request, response=response)))
            return response

        return await self._run("regress", "Regress", request, context, work)

    async def MultiInference(self, request: inference_pb2.MultiInferenceRequest,
                             context: grpc.aio.ServicerContext) -> inference_pb2.MultiInferenceResponse:
        async def work(call: Call) -> inference_pb2.MultiInferenceResponse:
            if not request.tasks:
                raise invalid_argument("Tasks cannot be empty")
            names = {task.model_spec.name for task in request.tasks}
            if len(names) != 1:
                raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name")
            signatures = [task.model_spec.signature_name for task in request.tasks]
            if len(set(signatures)) != len(signatures):
                raise invalid_argument("Duplicate evaluation of signature: " + signatures[0])
            call.model = request.tasks[0].model_spec.name
            name, version, label = _spec(request.tasks[0].model_spec)
            handle = await self.service.resolve(name, version, label, getattr(call, "client_id", None))
            call.version = str(handle.version)
            examples = examples_from_input(request.input)
            self.service.metrics.example_counts.observe((name,), len(examples))
            self.service.metrics.example_count_total.inc((name,), len(examples))
            response = inference_pb2.MultiInferenceResponse()
            for task in request.tasks:
                result = response.results.add()
                fill_spec(result.model_spec, name, handle.version, task.model_spec.signature_name)
                if task.method_name == "tensorflow/serving/classify":
                    results, _ = await self.service.backend.classify(handle, task.model_spec.signature_name, examples)
                    fill_classifications(result.classification_result, results)
                elif task.method_name == "tensorflow/serving/regress":
                    values, _ = await self.service.backend.regress(handle, task.model_spec.signature_name, examples)
                    result.regression_result.regressions.extend(regression_pb2.Regression(value=v) for v in values)
                else:
                    raise ServingError(Code.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}")
            self.service.log_request(call, None, lambda: prediction_log_pb2.PredictionLog(
                multi_inference_log=prediction_log_pb2.MultiInferenceLog(request=request, response=response)))
            return response

        return await self._run("multi_inference", None, request, context, work)

    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                               context: grpc.aio.ServicerContext) -> get_model_metadata_pb2.GetModelMetadataResponse:
        async def work(call: Call) -> get_model_metadata_pb2.GetModelMetadataResponse:
            if not request.metadata_field:
                raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise invalid_argument(f"Metadata field {field} is not supported")
            name, version, label = _spec(request.model_spec)
            handle = await self.service.backend.resolve(name, version, label)
            call.version = str(handle.version)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, definition in handle.signatures.items():
                signature_map.signature_def[key].CopyFrom(definition)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = name
            response.model_spec.version.value = handle.version
            response.metadata["signature_def"].Pack(signature_map)
            return response

        return await self._run("metadata", None, request, context, work)


class ModelServicer(_Base, model_service_pb2_grpc.ModelServiceServicer):
    async def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                             context: grpc.aio.ServicerContext) -> get_model_status_pb2.GetModelStatusResponse:
        async def work(call: Call) -> get_model_status_pb2.GetModelStatusResponse:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            name, version, _label = _spec(request.model_spec)
            return await self.service.backend.status(name, version)

        return await self._run("status", None, request, context, work)

    async def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                        context: grpc.aio.ServicerContext) -> model_management_pb2.ReloadConfigResponse:
        async def work(call: Call) -> model_management_pb2.ReloadConfigResponse:
            await self.service.reload(request.config)
            response = model_management_pb2.ReloadConfigResponse()
            response.status.error_code = 0
            return response

        return await self._run("reload", None, request, context, work)


def fill_spec(spec: Any, name: str, version: int, signature: str) -> None:
    spec.name = name
    spec.version.value = version
    spec.signature_name = signature or "serving_default"


def fill_classifications(result: classification_pb2.ClassificationResult, results: list) -> None:
    for classes in results:
        entry = result.classifications.add()
        for label, score in classes:
            entry.classes.add(label=label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label),
                              score=score)


def add_services(server: grpc.aio.Server, service: Service, tensor_content: bool = False) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service, tensor_content), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service, tensor_content), server)
