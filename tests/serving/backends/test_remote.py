"""Gateway mode (backends/remote.py): inference, status and Classify forwarded to a server behind,
with auth and audit in front."""
from __future__ import annotations

from pathlib import Path

import httpx
from serving_helpers import MODEL, metric_value, start_server

from privacy.audit import verify
from serving.client import GrpcClient
from serving.demo_model import raw_row

TOKEN = "alice:" + "a" * 32
BODY = {"signature_name": "predict_raw", "instances": [raw_row(1)]}


def test_gateway_forwards_to_backend_server(shared_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    audit = tmp_path / "gateway-audit.log"
    gateway = start_server(tmp_path, f"--remote_backend={shared_server.grpc_target}",
                           f"--auth_token_file={tokens}", f"--audit_log_file={audit}")
    try:
        direct = httpx.post(f"{shared_server.rest_url}/v1/models/{MODEL}/versions/1:predict", json=BODY)
        headers = {"Authorization": "Bearer " + "a" * 32}
        via = httpx.post(f"{gateway.rest_url}/v1/models/{MODEL}/versions/1:predict", json=BODY, headers=headers)
        assert via.status_code == 200 and via.content == direct.content
        assert httpx.post(f"{gateway.rest_url}/v1/models/{MODEL}:predict", json=BODY).status_code == 401
        missing = httpx.post(f"{gateway.rest_url}/v1/models/nope:predict", json=BODY, headers=headers)
        assert missing.status_code == 404 and missing.json()["error"] == "Servable not found for request: Latest(nope)"
        status = httpx.get(f"{gateway.rest_url}/v1/models/{MODEL}", headers=headers).json()
        assert [s["version"] for s in status["model_version_status"]] == ["2", "1"]
        with GrpcClient(gateway.grpc_target, token="a" * 32) as client:
            results = client.classify(MODEL, [{"feature_0": 1.0}], signature="classify", label="canary")
            assert [label for label, _ in results[0]] == ["0", "1"]
        metrics = httpx.get(f"{gateway.rest_url}/monitoring/prometheus/metrics").text
        assert metric_value(metrics, "esteira_requests_total", model="demo", version="1", api="predict",
                            entrypoint="REST", code="OK") == 1
    finally:
        gateway.stop()
    assert verify(audit).records >= 4
