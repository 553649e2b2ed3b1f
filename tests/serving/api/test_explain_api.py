"""The explanation verb against a running server with a real breast-cancer model (Transform + run_fn): REST
``:explain`` of rows and of a remembered decision by its request id, gRPC Predict on ``explain``, the access
audit linking each explanation to the prediction it explains, predicted classes counted at the model's
own decision threshold, and the refusals (no explain signature, a forgotten request id, too many rows)."""
from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from serving_helpers import metric_value, start_server, write_config
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from privacy.audit import read_records
from serving.demo_model import export_demo_model
from serving.protocol.json_codec import features_to_example
from serving.protocol.tensors import from_proto, to_proto
from serving.server import RunningServer
from tests.explained_models import REASONS, THRESHOLD, ExplainedModel, shared_breast_cancer_model

MODEL, PLAIN = "breast_cancer", "plain"
TTL = 600


@dataclass(frozen=True)
class Setup:
    server: RunningServer
    model: ExplainedModel
    audit_log: Path
    config: Path

    def url(self, model: str = MODEL, verb: str = "explain") -> str:
        return f"{self.server.rest_url}/v1/models/{model}:{verb}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("explain_api")
    model = shared_breast_cancer_model(root / MODEL)
    export_demo_model(root / PLAIN, 1)
    config = write_config(root / "models.config", {MODEL: str(root / MODEL), PLAIN: str(root / PLAIN)})
    server = start_server(root, f"--model_config_file={config}", "--file_system_poll_wait_seconds=0",
                          f"--audit_log_file={root / 'audit.log'}", f"--feedback_ttl_seconds={TTL}")
    yield Setup(server, model, root / "audit.log", config)
    server.stop()


def _audit(setup: Setup) -> list[dict]:
    return list(read_records(setup.audit_log))


def test_explain_answers_the_decision_its_attributions_and_readable_reasons(setup: Setup) -> None:
    rows = setup.model.rows[:8]
    response = httpx.post(setup.url(), json={"instances": rows}, headers={"X-Request-Id": "fresh-1"}, timeout=60)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_spec"] == {"name": MODEL, "version": "1", "signature_name": "explain"}
    assert answer["decision_threshold"] == THRESHOLD and answer["explains_request_id"] == "fresh-1"
    assert answer["method"]["method"] == "integrated gradients" and answer["method"]["steps"] == 32
    served = httpx.post(setup.url(verb="predict"), json={"signature_name": "serving_raw", "instances": rows},
                        timeout=30).json()["predictions"]
    for explained, score in zip(answer["predictions"], served, strict=True):
        assert explained["probability"] == pytest.approx(score[0], abs=1e-5)
        assert explained["class"] == int(explained["probability"] > THRESHOLD)
        assert sorted(explained["attributions"]) == sorted(setup.model.features)
        assert abs(explained["completeness_error"]) < 0.05
        total = sum(explained["attributions"].values())
        assert total == pytest.approx(explained["probability"] - explained["baseline_probability"], abs=0.05)
        reasons = explained["reasons"]
        assert len(reasons) == 3
        sizes = [abs(reason["attribution"]) for reason in reasons]
        assert sizes == sorted(sizes, reverse=True) and sizes[0] == max(map(abs, explained["attributions"].values()))
        for reason in reasons:
            assert reason["direction"] == ("raises" if reason["attribution"] > 0 else "lowers")
            readable = reason["feature"].replace("_", " ")
            texts = REASONS.get(reason["feature"], {"raises": f"{readable} raised the score",
                                                     "lowers": f"{readable} lowered the score"})
            assert reason["text"] == texts[reason["direction"]]
    line = [r for r in _audit(setup) if r.get("request_id") == "fresh-1"]
    assert [(r["api"], r["explains_request_id"], r["status"]) for r in line] == [("explain", "fresh-1", "OK")]


def test_a_remembered_decision_is_explained_by_its_request_id_and_audited_as_such(setup: Setup) -> None:
    rows = setup.model.rows[8:11]
    decided = httpx.post(setup.url(verb="predict"), json={"signature_name": "serving_raw", "instances": rows},
                         headers={"X-Request-Id": "case-42"}, timeout=30)
    assert decided.status_code == 200
    scores = [row[0] for row in decided.json()["predictions"]]
    response = httpx.post(setup.url(), json={"request_id": "case-42"}, headers={"X-Request-Id": "review-7"},
                          timeout=60)
    assert response.status_code == 200, response.text
    answer = response.json()
    decision = answer["decision"]
    assert decision["request_id"] == "case-42" and decision["version"] == 1
    assert decision["signature_name"] == "serving_raw"
    assert decision["scores"] == pytest.approx(scores, abs=1e-6)
    assert decision["classes"] == [int(score > THRESHOLD) for score in scores]
    assert decision["inputs"][1]["worst_radius"] == pytest.approx(rows[1]["worst_radius"], rel=1e-6)
    assert 0 < decision["forgotten_in_seconds"] <= TTL
    assert [p["probability"] for p in answer["predictions"]] == pytest.approx(scores, abs=1e-5)
    assert answer["explains_request_id"] == "case-42"
    records = _audit(setup)
    assert any(r.get("request_id") == "case-42" and r["api"] == "predict" for r in records)
    explained = [r for r in records if r.get("request_id") == "review-7"]
    assert [(r["api"], r["explains_request_id"]) for r in explained] == [("explain", "case-42")]


def test_a_decision_on_serialized_examples_is_explained_from_the_bytes_that_decided(setup: Setup) -> None:
    rows = setup.model.rows[11:13]
    examples = [{"examples": {"b64": base64.b64encode(features_to_example(row).SerializeToString()).decode()}}
                for row in rows]
    decided = httpx.post(setup.url(verb="predict"), json={"instances": examples},
                         headers={"X-Request-Id": "case-examples"}, timeout=30)
    assert decided.status_code == 200, decided.text
    response = httpx.post(setup.url(), json={"request_id": "case-examples"}, timeout=60)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["decision"]["signature_name"] == "serving_default"
    direct = httpx.post(setup.url(), json={"instances": rows}, timeout=60).json()["predictions"]
    for recalled, sent in zip(answer["predictions"], direct, strict=True):
        assert recalled["attributions"] == pytest.approx(sent["attributions"], abs=1e-6)
        assert recalled["probability"] == pytest.approx(sent["probability"], abs=1e-6)
    assert [p["probability"] for p in answer["predictions"]] == pytest.approx(answer["decision"]["scores"], abs=1e-5)



def _crossing_rows(model: ExplainedModel) -> list[dict[str, float]]:
    """A straight line from a benign to a malignant sample: its scores cross both the threshold and 0.5."""
    benign = next(row for row, label in zip(model.rows, model.labels, strict=True) if label == 0)
    malignant = next(row for row, label in zip(model.rows, model.labels, strict=True) if label == 1)
    return [{name: benign[name] + t * (malignant[name] - benign[name]) for name in benign}
            for t in np.linspace(0.0, 1.0, 41).tolist()]


def test_predicted_classes_are_counted_at_the_models_threshold(setup: Setup) -> None:
    rows = _crossing_rows(setup.model)
    metrics_url = f"{setup.server.rest_url}/monitoring/prometheus/metrics"

    def counted(label: str) -> float:
        text = httpx.get(metrics_url, timeout=10).text
        return metric_value(text, "esteira_predictions_total", model=MODEL, version="1", **{"class": label}) or 0.0

    before = counted("1"), counted("0")
    scores = [row[0] for row in httpx.post(setup.url(verb="predict"),
                                           json={"signature_name": "serving_raw", "instances": rows},
                                           timeout=30).json()["predictions"]]
    between = sum(THRESHOLD < score < 0.5 for score in scores)
    assert between >= 1, "no score between the threshold and 0.5; the rows cannot tell the rules apart"
    after = counted("1"), counted("0")
    assert after[0] - before[0] == sum(score > THRESHOLD for score in scores)
    assert after[1] - before[1] == sum(score <= THRESHOLD for score in scores)


def test_grpc_predict_on_the_explain_signature_adds_the_reason_codes(setup: Setup) -> None:
    rows = setup.model.rows[:2]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "explain"
    for name in setup.model.features:
        request.inputs[name].CopyFrom(to_proto(np.array([row[name] for row in rows], np.float32)))
    with grpc.insecure_channel(setup.server.grpc_target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=60, metadata=(("x-request-id", "grpc-explain-1"),))
    texts = from_proto(response.outputs["reason_texts"], "reason_texts")
    names = from_proto(response.outputs["reason_features"], "reason_features")
    values = from_proto(response.outputs["reason_attributions"], "reason_attributions")
    assert texts.shape == (2, 3) and names.shape == (2, 3) and values.shape == (2, 3)
    assert all(abs(values[0, i]) >= abs(values[0, i + 1]) for i in range(2))
    assert "attribution_worst_radius" in response.outputs and "baseline_probability" in response.outputs
    line = [r for r in _audit(setup) if r.get("request_id") == "grpc-explain-1"]
    assert [(r["api"], r["entrypoint"], r["explains_request_id"]) for r in line] == [("explain", "GRPC",
                                                                                       "grpc-explain-1")]


def test_refusals_name_the_problem(setup: Setup) -> None:
    plain = httpx.post(setup.url(PLAIN), json={"instances": [{"feature_0": 1.0}]}, timeout=30)
    assert plain.status_code == 400
    assert 'signature key "explain" not found' in plain.json()["error"]
    assert "model plain version 1 has no explanation signature" in plain.json()["error"]

    forgotten = httpx.post(setup.url(), json={"request_id": "never-seen"}, timeout=30)
    assert forgotten.status_code == 404
    assert f"keeps predictions for {TTL} s (--feedback_ttl_seconds)" in forgotten.json()["error"]

    too_many = httpx.post(setup.url(), json={"instances": setup.model.rows[:1] * 65}, timeout=30)
    assert too_many.status_code == 400 and "explain at most 64 rows" in too_many.json()["error"]

    with grpc.insecure_channel(setup.server.grpc_target) as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = PLAIN
        request.model_spec.signature_name = "explain"
        request.inputs["feature_0"].CopyFrom(to_proto(np.array([1.0], np.float32)))
        with pytest.raises(grpc.RpcError) as refused:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert '"explain" not found' in refused.value.details()


def test_a_gateway_reads_the_remote_versions_threshold_and_reasons_from_their_folders(
        setup: Setup, tmp_path: Path) -> None:
    gateway = start_server(tmp_path, f"--remote_backend={setup.server.grpc_target}",
                           f"--model_config_file={setup.config}")
    try:
        url = f"{gateway.rest_url}/v1/models/{MODEL}"
        rows = setup.model.rows[:4]
        explained = httpx.post(f"{url}:explain", json={"instances": rows}, timeout=60)
        assert explained.status_code == 200, explained.text
        answer = explained.json()
        assert answer["decision_threshold"] == THRESHOLD
        for row in answer["predictions"]:
            assert row["class"] == int(row["probability"] > THRESHOLD)
            for reason in row["reasons"]:
                if reason["feature"] in REASONS:
                    assert reason["text"] == REASONS[reason["feature"]][reason["direction"]]
        crossing = _crossing_rows(setup.model)
        scores = [s[0] for s in httpx.post(f"{url}:predict", json={"signature_name": "serving_raw",
                                                                    "instances": crossing},
                                           timeout=30).json()["predictions"]]
        assert any(THRESHOLD < score < 0.5 for score in scores), "the rows cannot tell the two rules apart"
        text = httpx.get(f"{gateway.rest_url}/monitoring/prometheus/metrics", timeout=10).text
        counted = metric_value(text, "esteira_predictions_total", model=MODEL, version="1", **{"class": "1"}) or 0.0
        assert counted == sum(score > THRESHOLD for score in scores)
    finally:
        gateway.stop()
