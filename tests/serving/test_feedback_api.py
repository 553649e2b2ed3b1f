"""Request ids on predictions and the feedback API on a whole server (REST and gRPC), with auth and audit,
and the metrics the dashboard reads: confusion counts, scores, version labels, reference shares, threads."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from serving_helpers import MODEL, metric_samples, metric_value, start_server, write_config
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from privacy.audit import read_records, verify
from serving.demo_model import raw_row
from serving.protocol.tensors import to_proto
from serving.server import RunningServer

TOKEN = "alice:" + "a" * 32
AUTH = {"Authorization": "Bearer " + "a" * 32}


@pytest.fixture(scope="module")
def server(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    tmp = tmp_path_factory.mktemp("feedback")
    (tmp / "tokens").write_text(TOKEN + "\n")
    config = write_config(tmp / "models.config", {MODEL: str(model_store / MODEL)},
                          labels={MODEL: {"stable": 1, "canary": 2}})
    running = start_server(tmp, f"--model_config_file={config}", "--file_system_poll_wait_seconds=0",
                           f"--auth_token_file={tmp / 'tokens'}", f"--audit_log_file={tmp / 'audit.log'}",
                           "--feedback_max_entries=50")
    yield running, tmp / "audit.log"
    running.stop()


def _predict(url: str, rows: int, version: int, request_id: str | None = None) -> httpx.Response:
    headers = dict(AUTH, **({"X-Request-Id": request_id} if request_id else {}))
    return httpx.post(f"{url}/v1/models/{MODEL}/versions/{version}:predict", headers=headers,
                      json={"signature_name": "predict_raw", "instances": [raw_row(i) for i in range(rows)]})


def _feedback(url: str, body: object, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/{MODEL}/feedback", json=body, headers=AUTH if headers is None else headers)


def _metrics(url: str) -> str:
    return httpx.get(f"{url}/monitoring/prometheus/metrics").text


def test_request_id_accepted_or_generated_and_returned(server) -> None:  # type: ignore[no-untyped-def]
    url = server[0].rest_url
    given = _predict(url, 1, 1, "client-id-1")
    assert given.status_code == 200 and given.headers["x-request-id"] == "client-id-1"
    generated = _predict(url, 1, 1)
    assert generated.status_code == 200 and len(generated.headers["x-request-id"]) == 32
    assert generated.headers["x-request-id"] != _predict(url, 1, 1).headers["x-request-id"]
    bad = _predict(url, 1, 1, "two words")
    assert bad.status_code == 400 and "X-Request-Id" in bad.json()["error"]


def test_feedback_joins_labels_once_per_row(server) -> None:  # type: ignore[no-untyped-def]
    url = server[0].rest_url
    response = _predict(url, 3, 2, "batch-7")
    predicted = [int(p[0] >= 0.5) for p in response.json()["predictions"]]
    before = _metrics(url)
    wrong = 1 - predicted[0]
    answer = _feedback(url, {"feedback": [
        {"request_id": "batch-7", "label": wrong},  # row 0
        {"request_id": "batch-7", "label": predicted[2], "row": 2},
        {"request_id": "batch-7", "label": wrong},  # duplicate of row 0
        {"request_id": "never-seen", "label": 1},
        {"request_id": "batch-7", "label": 1, "row": 3},
    ]})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["counted"] == 2 and result["unmatched"] == 3
    assert [r["status"] for r in result["results"]] == [
        "counted", "counted", "duplicate", "unknown", "row_out_of_range"]
    assert result["results"][0]["version"] == "2"
    after = _metrics(url)

    def delta(name: str, **labels: str) -> float:
        return (metric_value(after, name, **labels) or 0) - (metric_value(before, name, **labels) or 0)

    assert delta("esteira_feedback_total", model=MODEL, version="2", true_class=str(wrong),
                 predicted_class=str(predicted[0])) == 1
    assert delta("esteira_feedback_total", model=MODEL, version="2", true_class=str(predicted[2]),
                 predicted_class=str(predicted[2])) >= 1
    assert delta("esteira_feedback_unmatched_total", reason="duplicate") == 1
    assert delta("esteira_feedback_unmatched_total", reason="unknown") == 1
    assert delta("esteira_feedback_unmatched_total", reason="row_out_of_range") == 1


def test_malformed_feedback_is_400_and_counts_nothing(server) -> None:  # type: ignore[no-untyped-def]
    url = server[0].rest_url
    _predict(url, 1, 1, "kept-for-later")
    before = metric_samples(_metrics(url), "esteira_feedback_total")
    not_json = httpx.post(f"{url}/v1/models/{MODEL}/feedback", content=b"{oops", headers=AUTH)
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]
    half_bad = _feedback(url, {"feedback": [{"request_id": "kept-for-later", "label": 1}, {"label": 1}]})
    assert half_bad.status_code == 400 and "feedback[1].request_id" in half_bad.json()["error"]
    assert metric_samples(_metrics(url), "esteira_feedback_total") == before  # the good item was not counted
    assert _feedback(url, {"feedback": [{"request_id": "kept-for-later", "label": 1}]}).json()["counted"] == 1


def test_feedback_authenticated_and_audited_like_inference(server) -> None:  # type: ignore[no-untyped-def]
    running, audit = server
    url = running.rest_url
    refused = _feedback(url, {"feedback": [{"request_id": "x", "label": 1}]}, headers={})
    assert refused.status_code == 401 and "bearer token" in refused.json()["error"]
    _predict(url, 1, 1, "audited-1")
    assert _feedback(url, {"feedback": [{"request_id": "audited-1", "label": 0}]}).status_code == 200
    deadline = time.monotonic() + 10  # the audit sink writes in the background every 50 ms
    while True:
        records = list(read_records(audit))
        feedback_ok = any(r["api"] == "feedback" and r["status"] == "OK" for r in records)
        predicted = any(r.get("request_id") == "audited-1" and r["api"] == "predict" for r in records)
        if (feedback_ok and predicted) or time.monotonic() > deadline:  # batches may land in either order
            break
        time.sleep(0.05)
    feedback = [r for r in records if r["api"] == "feedback"]
    assert {r["status"] for r in feedback} >= {"OK", "UNAUTHENTICATED"}
    assert predicted, "the predict line carries its request id"
    assert verify(audit).records >= len(records)  # the chain holds (later lines may have landed since)


def test_grpc_predict_carries_the_request_id(server) -> None:  # type: ignore[no-untyped-def]
    running = server[0]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.value = 1
    request.model_spec.signature_name = "predict_raw"
    for name, value in raw_row(0).items():
        request.inputs[name].CopyFrom(to_proto(np.asarray([value], dtype=np.float32)))
    with grpc.insecure_channel(running.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        auth = ("authorization", AUTH["Authorization"])
        _, call = stub.Predict.with_call(request, metadata=(auth, ("x-request-id", "grpc-1")), timeout=10)
        assert dict(call.trailing_metadata())["x-request-id"] == "grpc-1"
        _, call = stub.Predict.with_call(request, metadata=(auth,), timeout=10)
        assert len(dict(call.trailing_metadata())["x-request-id"]) == 32
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, metadata=(auth, ("x-request-id", "bad id")), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "x-request-id" in info.value.details()
    answer = _feedback(running.rest_url, {"feedback": [{"request_id": "grpc-1", "label": 1}]}).json()
    assert answer["results"][0]["status"] == "counted" and answer["results"][0]["version"] == "1"


def test_memory_bounded_by_flag(server) -> None:  # type: ignore[no-untyped-def]
    url = server[0].rest_url
    _predict(url, 1, 1, "first-of-many")
    for _ in range(50):  # --feedback_max_entries=50
        _predict(url, 1, 1)
    text = _metrics(url)
    assert metric_value(text, "esteira_feedback_memory_entries") == 50
    assert metric_value(text, "esteira_feedback_memory_evictions_total", reason="evicted") >= 1
    answer = _feedback(url, {"feedback": [{"request_id": "first-of-many", "label": 1}]}).json()
    assert answer["results"][0]["status"] == "evicted"


def test_dashboard_metrics_exported(server) -> None:  # type: ignore[no-untyped-def]
    url = server[0].rest_url
    _predict(url, 4, 1)
    text = _metrics(url)
    labels = {(s["label"], s["version"]) for s, v in metric_samples(text, "esteira_model_version_label_info")
              if s["model"] == MODEL and v == 1}
    assert labels == {("stable", "1"), ("canary", "2")}
    count = metric_value(text, "esteira_prediction_score_count", model=MODEL, version="1")
    assert count is not None and count >= 4
    assert metric_value(text, "esteira_prediction_score_bucket", model=MODEL, version="1", le="+Inf") == count
    shares = [v for s, v in metric_samples(text, "esteira_input_feature_reference_share")
              if s["model"] == MODEL and s["version"] == "1" and s["feature"] == "feature_0"]
    assert shares and shares == sorted(shares) and shares[-1] == pytest.approx(1.0)
    assert (metric_value(text, "process_threads") or 0) > 1
