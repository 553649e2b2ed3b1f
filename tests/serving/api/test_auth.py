"""Bearer tokens on REST and gRPC, and the hash-chained access audit of a running server."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from serving_helpers import MODEL, start_server

from privacy.audit import read_records, verify
from serving.client import GrpcClient, RestClient, ServingClientError
from serving.demo_model import raw_row

TOKEN = "alice:" + "a" * 32
BODY = {"signature_name": "predict_raw", "instances": [raw_row(1)]}


def test_auth_and_audit(model_store: Path, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    audit = tmp_path / "audit.log"
    server = start_server(tmp_path, f"--model_name={MODEL}", f"--model_base_path={model_store / MODEL}",
                          f"--auth_token_file={tokens}", f"--audit_log_file={audit}")
    try:
        url = server.rest_url
        for path in (f"/v1/models/{MODEL}:predict", f"/v1/models/{MODEL}:classify"):
            response = httpx.post(url + path, json=BODY)
            assert response.status_code == 401 and "bearer token" in response.json()["error"]
        assert httpx.get(f"{url}/v1/models/{MODEL}").status_code == 401
        wrong = httpx.post(f"{url}/v1/models/{MODEL}:predict", json=BODY,
                           headers={"Authorization": "Bearer " + "b" * 32})
        assert wrong.status_code == 401
        assert httpx.get(f"{url}/readyz").status_code == 200  # probes open by default
        assert httpx.get(f"{url}/monitoring/prometheus/metrics").status_code == 200
        with RestClient(url, token="a" * 32) as client:
            assert len(client.predict(MODEL, instances=BODY["instances"], signature="predict_raw")) == 1
        with GrpcClient(server.grpc_target) as client:
            with pytest.raises(ServingClientError) as info:
                client.status(MODEL)
            assert info.value.code == "UNAUTHENTICATED"
        with GrpcClient(server.grpc_target, token="a" * 32) as client:
            assert client.status(MODEL).model_version_status
    finally:
        server.stop()
    assert verify(audit).records >= 7
    records = list(read_records(audit))
    ok = [r for r in records if r["status"] == "OK" and r["api"] == "predict"]
    assert ok and ok[0]["caller"] == "alice" and ok[0]["model"] == MODEL and ok[0]["version"] == "2"
    assert {r["status"] for r in records} >= {"OK", "UNAUTHENTICATED"}
    assert str(BODY["instances"][0]["feature_0"]) not in audit.read_text()  # never payload values
    lines = audit.read_text().splitlines(keepends=True)
    audit.write_text("".join(lines[:2] + lines[3:]))
    with pytest.raises(Exception, match="line 3"):
        verify(audit)
