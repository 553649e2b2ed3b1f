"""Every SavedModel TF Serving loads, we load: a TF1 graph TF2's function loader refuses (half_plus_three's
scalar declarations) answers Predict, Classify, Regress and MultiInference from a session, and TFLite files
converted without TFLite signatures answer under TF Serving's SignatureDefs; all in one models.config."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_helpers import start_server, write_config
from tf1_models import example, with_signature_defs_metadata, write_half_plus_three, write_half_plus_two_tflite

from serving.client import GrpcClient, RestClient
from serving.protocol.errors import ServingError
from serving.protocol.tensors import from_proto, to_proto
from serving.servables.saved_model import SavedModelServable
from serving.servables.tflite import TfLiteServable

HP3, LITE, LITE_SIGDEF = "half_plus_three", "half_plus_two_tflite", "half_plus_two_tflite_with_sigdef"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tf1")
    write_half_plus_three(root / HP3 / "123")
    write_half_plus_two_tflite(root / LITE / "123", with_sigdef=False)
    write_half_plus_two_tflite(root / LITE_SIGDEF / "123", with_sigdef=True)
    return root


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    tmp = tmp_path_factory.mktemp("tf1-server")
    config = write_config(tmp / "models.config", {name: str(store / name) for name in (HP3, LITE, LITE_SIGDEF)},
                          policy="latest { num_versions: 1 }")
    running = start_server(tmp, f"--model_config_file={config}", "--prefer_tflite_model=true",
                           "--file_system_poll_wait_seconds=0")
    yield running
    running.stop()


def test_tf2_loader_refuses_the_graph_and_the_session_serves_it(store: Path) -> None:
    import tensorflow as tf

    with pytest.raises(ValueError, match="rank"):  # the declared scalar output against the graph's [?, 1]
        tf.saved_model.load(str(store / HP3 / "123"))
    servable = SavedModelServable(HP3, 123, store / HP3 / "123")
    servable.load()
    try:
        assert servable.in_session
        assert sorted(servable.signatures) == ["classify_x_to_y", "predict_scalar", "regress_x_to_y", "serving_default"]
        with pytest.raises(ServingError) as refused:  # the graph's own refusal, as an INVALID_ARGUMENT
            servable.regress(servable.signature("regress_x_to_y"), [b"not an example"])
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        servable.unload()


def test_rest_predict_classify_regress_from_the_session(server) -> None:  # type: ignore[no-untyped-def]
    with RestClient(server.rest_url) as client:
        assert client.status(HP3)["model_version_status"][0]["state"] == "AVAILABLE"
        assert client.predict(HP3, instances=[1.0, 2.0, 5.0]) == [3.5, 4.0, 5.5]  # unknown-rank input
        assert client.predict(HP3, instances=[1.0, 2.0], signature="predict_scalar") == [3.5, 4.0]  # declared scalar
        assert client.regress(HP3, [{"x": 80.0}, {"x": 1.0}], signature="regress_x_to_y") == [43.0, 3.5]
        classes = client.classify(HP3, [{"x": 20.0}], signature="classify_x_to_y")
        assert [[score for _label, score in row] for row in classes] == [[13.0]]
        signatures = client.metadata(HP3)["metadata"]["signature_def"]["signature_def"]
        assert signatures["regress_x_to_y"]["method_name"] == "tensorflow/serving/regress"


def test_grpc_predict_classify_regress_and_multi_inference_from_the_session(server) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        predict = predict_pb2.PredictRequest()
        predict.model_spec.name, predict.model_spec.signature_name = HP3, "predict_scalar"
        predict.inputs["x"].CopyFrom(to_proto(np.array([[1.0], [3.0]], np.float32)))
        np.testing.assert_array_equal(from_proto(stub.Predict(predict).outputs["y"], "y"), [[3.5], [4.5]])
        examples = inference_pb2.MultiInferenceRequest().input
        for x in (20.0, 2.0):
            examples.example_list.examples.add().ParseFromString(example(x))
        classify = classification_pb2.ClassificationRequest(input=examples)
        classify.model_spec.name, classify.model_spec.signature_name = HP3, "classify_x_to_y"
        scores = [[c.score for c in row.classes] for row in stub.Classify(classify).result.classifications]
        assert scores == [[13.0], [4.0]]
        regress = regression_pb2.RegressionRequest(input=examples)
        regress.model_spec.name, regress.model_spec.signature_name = HP3, "regress_x_to_y"
        assert [r.value for r in stub.Regress(regress).result.regressions] == [13.0, 4.0]
        multi = inference_pb2.MultiInferenceRequest(input=examples)
        for signature, method in (("classify_x_to_y", "tensorflow/serving/classify"),
                                  ("regress_x_to_y", "tensorflow/serving/regress")):
            task = multi.tasks.add(method_name=method)
            task.model_spec.name, task.model_spec.signature_name = HP3, signature
        results = stub.MultiInference(multi).results
        assert [c.classes[0].score for c in results[0].classification_result.classifications] == [13.0, 4.0]
        assert [r.value for r in results[1].regression_result.regressions] == [13.0, 4.0]


@pytest.mark.parametrize(("name", "tensor"), [(LITE, "x"), (LITE_SIGDEF, "tflite_input")])
def test_tflite_without_signatures_serves_tf_servings_signature_defs(server, name: str, tensor: str) -> None:  # type: ignore[no-untyped-def]
    """Without metadata the alias is the tensor's name; with it, the stored SignatureDef's alias ``x``
    bound to the tensor ``tflite_input``: either way TF Serving's ``{"x": ...}`` request answers."""
    with RestClient(server.rest_url) as rest, GrpcClient(server.grpc_target) as rpc:
        assert rest.predict(name, instances=[[1.0], [2.0], [5.0]]) == [[2.5], [3.0], [4.5]]
        outputs = rpc.predict(name, {"x": np.array([[4.0]], np.float32)})
        np.testing.assert_array_equal(outputs["y"], [[4.0]])
        _spec, signature_map = rpc.metadata(name)
    assert list(signature_map.signature_def) == ["serving_default"]
    definition = signature_map.signature_def["serving_default"]
    assert list(definition.inputs) == ["x"] and definition.inputs["x"].name == tensor
    assert definition.method_name == "tensorflow/serving/predict"


def test_unreadable_signature_defs_metadata_fails_the_version_with_the_fix(tmp_path: Path) -> None:
    version = write_half_plus_two_tflite(tmp_path / "1", with_sigdef=False)
    model = (version / "model.tflite").read_bytes()
    (version / "model.tflite").write_bytes(with_signature_defs_metadata(model, {"serving_default": b"\xff\xff"}))
    with pytest.raises(ServingError) as failed:
        TfLiteServable("bad", 1, version).load()
    assert failed.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "signature_defs_metadata" in failed.value.message
