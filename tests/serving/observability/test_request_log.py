"""Request logging (observability/request_log.py) on a running server: a model's logging_config writes
PredictionLog TFRecords for Predict, Classify, Regress and MultiInference over both APIs with the request
id; TensorFlow reads them back and they replay to the same answers; files rotate within their bounds; a
model without logging_config logs nothing; a bad logging_config in a reload is refused."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from serving_helpers import MODEL, metric_value, start_server, write_config
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving.config import read_model_config
from serving.demo_model import FEATURES, raw_row
from serving.protocol.json_codec import features_to_example
from serving.protocol.tensors import from_proto, to_proto

QUIET = "quiet"  # the same model files under a name without logging_config
EXAMPLES = [{"feature_0": 0.5, "feature_1": -1.0}, {"feature_0": 2.0}]


def logging_config(name: str, prefix: Path, rate: float = 1.0, kind: str = "file") -> str:
    return (f'logging_config {{ log_collector_config {{ type: "{kind}" filename_prefix: "{prefix}" }} '
            f"sampling_config {{ sampling_rate: {rate} }} }}")


def config_with_logging(path: Path, store: Path, prefix: Path, *, quiet: bool = True) -> Path:
    models = {MODEL: str(store / MODEL), **({QUIET: str(store / MODEL)} if quiet else {})}
    write_config(path, models)
    text = path.read_text().replace(f'name: "{MODEL}" base_path: "{store / MODEL}" model_platform: "tensorflow"',
                                    f'name: "{MODEL}" base_path: "{store / MODEL}" model_platform: "tensorflow" '
                                    + logging_config(MODEL, prefix), 1)
    path.write_text(text)
    return path


def read_logs(prefix: Path) -> list[prediction_log_pb2.PredictionLog]:
    """Every record of every file of ``prefix``, oldest file first, read with TensorFlow."""
    import tensorflow as tf

    files = sorted(str(p) for p in prefix.parent.glob(f"{prefix.name}.*.tfrecord"))
    return [prediction_log_pb2.PredictionLog.FromString(raw.numpy()) for raw in tf.data.TFRecordDataset(files)]


def wait_logged(rest_url: str, model: str, count: int) -> None:
    deadline = time.monotonic() + 15
    while True:
        text = httpx.get(f"{rest_url}/monitoring/prometheus/metrics").text
        written = metric_value(text, ":tensorflow:serving:request_log_count", model_name=model, status_code="OK")
        if (written or 0) >= count:
            return
        assert time.monotonic() < deadline, f"fewer than {count} records of {model} written within 15 s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("request-log")
    prefix = tmp / "logs" / MODEL  # the folder does not exist yet: the server makes it
    config = config_with_logging(tmp / "models.config", model_store, prefix)
    running = start_server(tmp, f"--model_config_file={config}", "--file_system_poll_wait_seconds=0")
    channel = grpc.insecure_channel(running.grpc_target)
    yield {"server": running, "prefix": prefix, "config": config, "tmp": tmp,
           "prediction": prediction_service_pb2_grpc.PredictionServiceStub(channel),
           "models": model_service_pb2_grpc.ModelServiceStub(channel)}
    channel.close()
    running.stop()


def _examples_input(request: Any) -> None:
    for features in EXAMPLES:
        request.input.example_list.examples.add().CopyFrom(features_to_example(dict(features)))


def send_every_api(server: dict[str, Any], model: str) -> None:
    """Predict, Classify and Regress over REST and gRPC, and MultiInference (gRPC only), each with a request id."""
    url, stub = server["server"].rest_url, server["prediction"]
    for verb, body in (("predict", {"signature_name": "predict_raw", "instances": [raw_row(1), raw_row(2)]}),
                       ("classify", {"signature_name": "classify", "examples": EXAMPLES}),
                       ("regress", {"signature_name": "regress", "examples": EXAMPLES})):
        answer = httpx.post(f"{url}/v1/models/{model}/versions/1:{verb}", json=body,
                            headers={"X-Request-Id": f"rest-{verb}-{model}"}, timeout=10)
        assert answer.status_code == 200 and answer.headers["x-request-id"] == f"rest-{verb}-{model}"
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name, predict.model_spec.signature_name = model, "predict_raw"
    for name in FEATURES:
        predict.inputs[name].CopyFrom(to_proto(np.array([0.25], dtype=np.float32)))
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name, classify.model_spec.signature_name = model, "classify"
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name, regress.model_spec.signature_name = model, "regress"
    multi = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify", "tensorflow/serving/classify"), ("regress", "tensorflow/serving/regress")):
        task = multi.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = model, signature
    for request in (classify, regress, multi):
        _examples_input(request)
    for method, request, api in ((stub.Predict, predict, "predict"), (stub.Classify, classify, "classify"),
                                 (stub.Regress, regress, "regress"), (stub.MultiInference, multi, "multi")):
        _, call = method.with_call(request, metadata=(("x-request-id", f"grpc-{api}-{model}"),), timeout=10)
        assert dict(call.trailing_metadata())["x-request-id"] == f"grpc-{api}-{model}"


def replay(stub: Any, record: prediction_log_pb2.PredictionLog) -> tuple[Any, Any]:
    """Send the logged request again; returns (logged response, new response)."""
    kind = record.WhichOneof("log_type")
    log = getattr(record, kind)
    method = {"predict_log": stub.Predict, "classify_log": stub.Classify, "regress_log": stub.Regress,
              "multi_inference_log": stub.MultiInference}[kind]
    return log.response, method(log.request, timeout=10)


def test_every_inference_api_is_logged_with_its_request_id_and_replays_to_the_same_answer(server) -> None:  # type: ignore[no-untyped-def]
    send_every_api(server, MODEL)
    send_every_api(server, QUIET)
    wait_logged(server["server"].rest_url, MODEL, 7)
    records = read_logs(server["prefix"])
    kinds = sorted(record.WhichOneof("log_type") for record in records)
    assert kinds == sorted(["predict_log"] * 2 + ["classify_log"] * 2 + ["regress_log"] * 2 + ["multi_inference_log"])
    ids = {record.log_metadata.request_origin for record in records}
    assert ids == {f"rest-{v}-{MODEL}" for v in ("predict", "classify", "regress")} | {
        f"grpc-{a}-{MODEL}" for a in ("predict", "classify", "regress", "multi")}  # no record of QUIET
    for record in records:
        metadata = record.log_metadata
        assert metadata.model_spec.name == MODEL and metadata.model_spec.version.value in (1, 2)
        assert metadata.sampling_config.sampling_rate == 1.0 and list(metadata.saved_model_tags) == ["serve"]
        assert abs(metadata.timestamp_secs - time.time()) < 120
        logged, again = replay(server["prediction"], record)
        if record.HasField("predict_log"):
            assert set(logged.outputs) == set(again.outputs) and logged.outputs
            for alias in logged.outputs:
                np.testing.assert_allclose(from_proto(again.outputs[alias], alias),
                                           from_proto(logged.outputs[alias], alias), rtol=1e-6)
        else:  # classifications, regressions, MultiInference's results: equal messages
            field = "results" if record.HasField("multi_inference_log") else "result"
            assert list(getattr(again, field) if field == "results" else [again.result]) == list(
                getattr(logged, field) if field == "results" else [logged.result])
            assert (logged.results[0] if field == "results" else logged.result).ByteSize() > 0
    rest_predict = next(r for r in records if r.log_metadata.request_origin == f"rest-predict-{MODEL}")
    assert rest_predict.predict_log.request.model_spec.version.value == 1  # as the REST path addressed it
    assert len(from_proto(rest_predict.predict_log.request.inputs["feature_0"], "feature_0")) == 2


def test_a_reload_with_a_bad_logging_config_is_refused_and_one_without_stops_the_log(server) -> None:  # type: ignore[no-untyped-def]
    config = read_model_config(server["config"])
    demo = next(m for m in config.model_config_list.config if m.name == MODEL)
    demo.logging_config.log_collector_config.type = "kafka"
    with pytest.raises(grpc.RpcError) as refused:
        server["models"].HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "log_collector_config.type" in refused.value.details() and MODEL in refused.value.details()
    before = len(read_logs(server["prefix"]))
    demo.ClearField("logging_config")
    server["models"].HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), timeout=30)
    assert httpx.post(f"{server['server'].rest_url}/v1/models/{MODEL}:predict",
                      json={"signature_name": "predict_raw", "instances": [raw_row(3)]}).status_code == 200
    time.sleep(0.5)
    assert len(read_logs(server["prefix"])) == before  # logging is off once the config no longer asks for it


def test_files_rotate_at_their_size_and_only_the_newest_are_kept(model_store: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "rotated" / MODEL
    config = config_with_logging(tmp_path / "models.config", model_store, prefix, quiet=False)
    running = start_server(tmp_path, f"--model_config_file={config}", "--file_system_poll_wait_seconds=0",
                           "--request_log_max_file_bytes=3000", "--request_log_max_files=2")
    try:
        for number in range(8):  # about 1.3 kB per record: two records a file, four files written
            answer = httpx.post(f"{running.rest_url}/v1/models/{MODEL}:predict", headers={"X-Request-Id": f"r{number}"},
                                json={"signature_name": "predict_raw", "instances": [raw_row(number)]})
            assert answer.status_code == 200
            wait_logged(running.rest_url, MODEL, number + 1)  # one at a time, so the files fill in order
    finally:
        running.stop()  # closes the last file
    files = sorted(prefix.parent.glob(f"{MODEL}.*.tfrecord"))
    assert len(files) == 2 and all(path.stat().st_size <= 3000 for path in files)
    ids = [record.log_metadata.request_origin for record in read_logs(prefix)]
    assert ids and ids == [f"r{n}" for n in range(8 - len(ids), 8)]  # the newest, in order; the oldest files deleted
    assert len(ids) < 8


def test_a_worker_rotates_only_its_own_files(tmp_path: Path) -> None:
    """Workers of --server_processes share a prefix: each keeps its newest files and never removes another's."""
    from serving.observability.request_log import _RotatingFile

    prefix = str(tmp_path / MODEL)
    other = _RotatingFile(prefix, max_file_bytes=100, max_files=1, worker="w1")
    other.write(b"x" * 50)
    other.flush()
    mine = _RotatingFile(prefix, max_file_bytes=100, max_files=1, worker="w0")
    for _ in range(3):  # a new file each time: the earlier ones of w0 are removed
        mine.write(b"y" * 90)
    mine.close()
    other.close()
    names = sorted(path.name.split(".")[1] for path in tmp_path.glob(f"{MODEL}.*.tfrecord"))
    assert names == ["w0", "w1"]
