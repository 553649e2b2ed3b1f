"""TF Serving contract: paths, JSON shapes, error bodies and status codes, over REST and gRPC.

Runs against the in-process server by default. Point it at any server that serves the demo model
(``esteira demo-model /models/demo --version 1`` and ``--version 2``, labels stable=1,
canary=2) with ``ESTEIRA_CONTRACT_REST=http://host:8501 ESTEIRA_CONTRACT_GRPC=host:8500`` -- e.g. a
real ``tensorflow_model_server`` -- and the same assertions run there.
"""
from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.demo_model import FEATURES, make_examples, raw_row
from serving.protocol.tensors import from_proto, to_proto

MODEL = "demo"


@pytest.fixture(scope="module")
def endpoints(request: pytest.FixtureRequest) -> tuple[str, str]:
    rest, target = os.environ.get("ESTEIRA_CONTRACT_REST"), os.environ.get("ESTEIRA_CONTRACT_GRPC")
    if rest and target:
        return rest.rstrip("/"), target
    server = request.getfixturevalue("shared_server")
    return server.rest_url, server.grpc_target


@pytest.fixture(scope="module")
def http(endpoints: tuple[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=endpoints[0], timeout=20) as client:
        yield client


@pytest.fixture(scope="module")
def stubs(endpoints: tuple[str, str]):  # type: ignore[no-untyped-def]
    channel = grpc.insecure_channel(endpoints[1])
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def error_of(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    assert response.content.startswith(b'{\n    "error": "') and response.content.endswith(b'"\n}')
    return json.loads(response.content)["error"]


# ---- status & metadata -----------------------------------------------------------------------------

def test_status_lists_versions_descending(http: httpx.Client) -> None:
    response = http.get(f"/v1/models/{MODEL}")
    assert response.status_code == 200
    body = response.json()
    versions = [entry["version"] for entry in body["model_version_status"]]
    assert versions == ["2", "1"]
    assert body["model_version_status"][0] == {
        "version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    assert response.text.startswith('{\n "model_version_status": [\n  {\n   "version": "2",')


def test_status_single_version_and_unknowns(http: httpx.Client) -> None:
    assert [e["version"] for e in http.get(f"/v1/models/{MODEL}/versions/1").json()["model_version_status"]] == ["1"]
    response = http.get(f"/v1/models/{MODEL}/versions/9")
    assert response.status_code == 404 and error_of(response) == f"Could not find version 9 of model {MODEL}"
    response = http.get("/v1/models/nope")
    assert response.status_code == 404 and error_of(response) == "Could not find any versions of model nope"
    response = http.get("/v1/models")
    assert response.status_code == 400 and error_of(response) == "Missing model name in request."


def test_metadata(http: httpx.Client) -> None:
    body = http.get(f"/v1/models/{MODEL}/versions/1/metadata").json()
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "predict_raw"} <= set(signatures)
    examples = signatures["serving_default"]["inputs"]["examples"]
    assert examples["dtype"] == "DT_STRING" and examples["tensor_shape"]["dim"][0]["size"] == "-1"
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"
    response = http.get(f"/v1/models/{MODEL}/labels/nolabel/metadata")
    assert response.status_code == 400 and error_of(response) == "Unrecognized servable version label: nolabel"
    response = http.get("/v1/models/nope/metadata")
    assert response.status_code == 404 and error_of(response) == "Servable not found for request: Latest(nope)"


# ---- predict ---------------------------------------------------------------------------------------

def test_predict_row_and_columnar_agree(http: httpx.Client) -> None:
    rows = [raw_row(1), raw_row(2)]
    row = http.post(f"/v1/models/{MODEL}/versions/1:predict", json={"signature_name": "predict_raw", "instances": rows})
    assert row.status_code == 200
    assert row.content.startswith(b'{\n    "predictions": [[') and row.content.endswith(b"]\n    ]\n}")
    columns = {name: [r[name] for r in rows] for name in FEATURES}
    col = http.post(f"/v1/models/{MODEL}/versions/1:predict", json={"signature_name": "predict_raw", "inputs": columns})
    assert col.status_code == 200 and col.content.startswith(b'{\n    "outputs": [\n        [\n')
    assert np.allclose(row.json()["predictions"], col.json()["outputs"])


def test_predict_b64_examples_matches_raw(http: httpx.Client) -> None:
    example = make_examples(1, seed=5)[0]
    from tensorflow.core.example import example_pb2

    parsed = example_pb2.Example.FromString(example)
    row = {name: parsed.features.feature[name].float_list.value[0] for name in FEATURES}
    b64 = http.post(f"/v1/models/{MODEL}/versions/1:predict",
                    json={"instances": [{"b64": base64.b64encode(example).decode()}]}).json()["predictions"]
    raw = http.post(f"/v1/models/{MODEL}/versions/1:predict",
                    json={"signature_name": "predict_raw", "instances": [row]}).json()["predictions"]
    assert np.allclose(b64, raw, atol=1e-6)


def test_versions_and_labels_route(http: httpx.Client) -> None:
    body = {"signature_name": "predict_raw", "instances": [raw_row(3)]}
    v1 = http.post(f"/v1/models/{MODEL}/versions/1:predict", json=body).json()["predictions"]
    v2 = http.post(f"/v1/models/{MODEL}/versions/2:predict", json=body).json()["predictions"]
    stable = http.post(f"/v1/models/{MODEL}/labels/stable:predict", json=body).json()["predictions"]
    canary = http.post(f"/v1/models/{MODEL}/labels/canary:predict", json=body).json()["predictions"]
    assert v1 == stable and v2 == canary and v1 != v2


def test_classify_and_regress(http: httpx.Client) -> None:
    examples = [dict.fromkeys(FEATURES, 0.5), {"feature_0": -1.0}]
    response = http.post(f"/v1/models/{MODEL}:classify", json={"signature_name": "classify", "examples": examples})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [[label for label, _ in row] for row in results] == [["0", "1"], ["0", "1"]]
    assert all(abs(sum(score for _, score in row) - 1) < 1e-5 for row in results)
    regress = http.post(f"/v1/models/{MODEL}:regress", json={"signature_name": "regress", "examples": examples})
    assert regress.status_code == 200
    assert np.allclose(regress.json()["results"], [row[1][1] for row in results], atol=1e-6)
    assert regress.content.startswith(b'{\n    "results": [') and regress.content.endswith(b"]\n}")
    context = http.post(f"/v1/models/{MODEL}:regress", json={
        "signature_name": "regress", "context": dict.fromkeys(FEATURES, 0.5), "examples": [{}]})
    assert np.allclose(context.json()["results"], regress.json()["results"][:1], atol=1e-6)


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    (f"/v1/models/{MODEL}:predict", b"", 400, "JSON Parse error: The document is empty"),
    (f"/v1/models/{MODEL}:predict", b"{bad", 400, "JSON Parse error: Missing a name for object member. at offset: 1"),
    (f"/v1/models/{MODEL}:predict", b"[1]", 400, "JSON Value: [1] Is not object"),
    (f"/v1/models/{MODEL}:predict", b'{"signature_name": 1, "instances": [1]}', 400,
     "not formatted correctly. 'signature_name' key must be a string value."),
    (f"/v1/models/{MODEL}:predict", b'{"instances": [1]}', 400,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
     "JSON Value: 1 Type: Number is not of expected type: string"),
    (f"/v1/models/{MODEL}:predict", b'{"foo": 1}', 400, "Missing 'inputs' or 'instances' key"),
    (f"/v1/models/{MODEL}:predict", b'{"instances": []}', 400, "No values in 'instances' array"),
    (f"/v1/models/{MODEL}:predict", b'{"instances": [1], "inputs": [1]}', 400,
     "expecting only one of 'inputs' or 'instances'"),
    (f"/v1/models/{MODEL}:predict", b'{"signature_name": "nope", "instances": [1]}', 400,
     'Serving signature name: "nope" not found in signature def'),
    (f"/v1/models/{MODEL}:predict", b'{"signature_name": "predict_raw", "instances": [1.0]}', 400,
     "instances is a plain list, but expecting list of objects as multiple input "
     "tensors required as per tensorinfo_map"),
    (f"/v1/models/{MODEL}:predict", b'{"signature_name": "predict_raw", "instances": [{"feature_0": 1.0}]}', 400,
     "keys must be equal to"),
    # TF Serving's message, then the keys that are wrong and the fix
    (f"/v1/models/{MODEL}:predict", json.dumps({"signature_name": "predict_raw", "instances": [
        {("featur_1" if name == "feature_1" else name): 1.0 for name in FEATURES}]}).encode(), 400,
     "keys must be equal to: feature_0,"),
    (f"/v1/models/{MODEL}:predict", json.dumps({"signature_name": "predict_raw", "instances": [
        {("featur_1" if name == "feature_1" else name): 1.0 for name in FEATURES}]}).encode(), 400,
     "; missing: feature_1; unexpected: featur_1 (did you mean feature_1?)"),
    (f"/v1/models/{MODEL}:predict", json.dumps({"instances": [dict.fromkeys(FEATURES, 1.0)]}).encode(), 400,
     'these are the inputs of signature "predict_raw": send "signature_name": "predict_raw"'),
    ("/v1/models/nope:predict", b'{"instances": [1]}', 404, "Servable not found for request: Latest(nope)"),
    (f"/v1/models/{MODEL}/versions/7:predict", b'{"instances": [1]}', 404,
     f"Servable not found for request: Specific({MODEL}, 7)"),
    (f"/v1/models/{MODEL}/labels/nolabel:predict", b'{"instances": [1]}', 400,
     "Unrecognized servable version label: nolabel"),
    (f"/v1/models/{MODEL}:classify", b'{"signature_name": "nope", "examples": [{}]}', 400,
     "No signature was found with the name: nope"),
    (f"/v1/models/{MODEL}:regress", b'{"examples": 3}', 400, "Expecting 'examples' value to be an list/array"),
    (f"/v1/models/{MODEL}:classify", b'{"examples": [{"f": null}]}', 400,
     "Feature: f has element with unexpected JSON type: Null"),
    (f"/v1/models/{MODEL}:regress", b'{"examples": [{"f": [1, 2.5]}]}', 400,
     "Unexpected element type in feature: f expecting type: int64"),
])
def test_predict_errors(http: httpx.Client, path: str, body: bytes, status: int, message: str) -> None:
    response = http.post(path, content=body)
    assert response.status_code == status, response.text
    assert message in error_of(response)


def test_malformed_paths(http: httpx.Client) -> None:
    for method, path in [("GET", f"/v1/models/{MODEL}:predict"), ("POST", f"/v1/models/{MODEL}/metadata"),
                         ("PUT", f"/v1/models/{MODEL}"), ("GET", f"/v1/models/{MODEL}/versions/x")]:
        response = http.request(method, path)
        assert response.status_code == 400
        assert error_of(response) == f"Malformed request: {method} {path}"
    response = http.get("/not/v1")
    assert response.status_code == 404 and response.headers["content-type"] == "text/html"
    assert b"<TITLE>404 Not Found</TITLE>" in response.content


def test_nan_and_infinity_round_trip(http: httpx.Client) -> None:
    row = raw_row(4)
    row["feature_0"] = "NaN-placeholder"
    body = json.dumps({"signature_name": "predict_raw", "instances": [row]}).replace('"NaN-placeholder"', "NaN")
    response = http.post(f"/v1/models/{MODEL}:predict", content=body.encode())
    assert response.status_code == 200  # NaN is a valid float input, as in rapidjson with kParseNanAndInfFlag
    assert len(json.loads(response.content)["predictions"]) == 1
    body = body.replace("NaN", "-Infinity")
    assert http.post(f"/v1/models/{MODEL}:predict", content=body.encode()).status_code == 200


def test_trailing_bytes_after_document_are_ignored(http: httpx.Client) -> None:
    body = json.dumps({"signature_name": "predict_raw", "instances": [raw_row(1)]}).encode() + b" trailing"
    assert http.post(f"/v1/models/{MODEL}:predict", content=body).status_code == 200


# ---- gRPC ------------------------------------------------------------------------------------------

def _predict_request(signature: str = "predict_raw", **spec: object) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = str(spec.get("name", MODEL))
    if "version" in spec:
        request.model_spec.version.value = int(spec["version"])  # type: ignore[arg-type]
    if "label" in spec:
        request.model_spec.version_label = str(spec["label"])
    request.model_spec.signature_name = signature
    for name, value in raw_row(6).items():
        request.inputs[name].CopyFrom(to_proto(np.array([value], np.float32)))
    return request


def test_grpc_predict_matches_rest(stubs, http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    prediction, _ = stubs
    response = prediction.Predict(_predict_request(version=2))
    assert response.model_spec.version.value == 2 and response.model_spec.signature_name == "predict_raw"
    grpc_value = from_proto(response.outputs["probabilities"])
    rest_value = http.post(f"/v1/models/{MODEL}/versions/2:predict",
                           json={"signature_name": "predict_raw", "instances": [raw_row(6)]}).json()["predictions"]
    assert np.allclose(grpc_value, rest_value)


@pytest.mark.parametrize(("request_kwargs", "code", "message"), [
    ({"name": "nope"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ({"version": 9}, grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Specific({MODEL}, 9)"),
    ({"label": "nolabel"}, grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nolabel"),
    ({"signature": "nope"}, grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
    ({"name": ""}, grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
])
def test_grpc_errors(stubs, request_kwargs: dict, code: grpc.StatusCode, message: str) -> None:  # type: ignore[no-untyped-def]
    prediction, _ = stubs
    kwargs = dict(request_kwargs)
    signature = kwargs.pop("signature", "predict_raw")
    with pytest.raises(grpc.RpcError) as info:
        prediction.Predict(_predict_request(signature, **kwargs))
    assert info.value.code() == code and info.value.details() == message


def test_grpc_input_mismatch(stubs) -> None:  # type: ignore[no-untyped-def]
    prediction, _ = stubs
    request = _predict_request()
    del request.inputs["feature_0"]
    with pytest.raises(grpc.RpcError) as info:
        prediction.Predict(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("input size does not match signature: 29!=30")
    request = _predict_request(output_filter=None) if False else _predict_request()
    request.output_filter.append("nope")
    with pytest.raises(grpc.RpcError) as info:
        prediction.Predict(request)
    assert "output tensor alias not found in signature: nope" in info.value.details()


def test_grpc_status_and_metadata(stubs) -> None:  # type: ignore[no-untyped-def]
    prediction, models = stubs
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    status = models.GetModelStatus(request)
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE), (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta.model_spec.name = MODEL
    meta.model_spec.version_label = "stable"
    response = prediction.GetModelMetadata(meta)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    assert response.model_spec.version.value == 1 and "predict_raw" in signature_map.signature_def
    with pytest.raises(grpc.RpcError) as info:
        prediction.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(model_spec=meta.model_spec))
    assert info.value.details() == "GetModelMetadataRequest must specify at least one metadata_field"


def test_grpc_classify_regress_multi_inference(stubs) -> None:  # type: ignore[no-untyped-def]
    from tensorflow.core.example import example_pb2
    from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2

    prediction, _ = stubs
    example = example_pb2.Example.FromString(make_examples(1, seed=2)[0])
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name, classify.model_spec.signature_name = MODEL, "classify"
    classify.input.example_list.examples.add().CopyFrom(example)
    classes = prediction.Classify(classify).result.classifications[0].classes
    assert [c.label for c in classes] == ["0", "1"]
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name, regress.model_spec.signature_name = MODEL, "regress"
    regress.input.CopyFrom(classify.input)
    value = prediction.Regress(regress).result.regressions[0].value
    assert abs(value - classes[1].score) < 1e-6
    multi = inference_pb2.MultiInferenceRequest()
    multi.input.CopyFrom(classify.input)
    for signature, method in (("classify", "tensorflow/serving/classify"), ("regress", "tensorflow/serving/regress")):
        task = multi.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = MODEL, signature
    results = prediction.MultiInference(multi).results
    assert abs(results[1].regression_result.regressions[0].value - value) < 1e-6
