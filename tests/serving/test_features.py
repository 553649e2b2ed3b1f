"""Batching, auth, access audit, canary routing, gateway mode, metrics and the CLI front ends."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from privacy.audit import read_records, verify
from serving.models.batching import Batcher
from serving.canary import CanaryRouter
from serving.cli import predict_main, promote_main, rollback_main, serve_main
from serving.client import GrpcClient, RestClient, ServingClientError
from serving.config import BatchingParameters, read_model_config
from serving.demo_model import raw_row
from serving.protocol.errors import ServingError
from serving.observability.metrics import Registry
from serving_helpers import MODEL, metric_samples, metric_value, start_server, write_config

TOKEN = "alice:" + "a" * 32
BODY = {"signature_name": "predict_raw", "instances": [raw_row(1)]}


# ---- batching --------------------------------------------------------------------------------------

def test_batcher_merges_and_rejects_when_full() -> None:
    calls: list[int] = []

    def slow(inputs):  # type: ignore[no-untyped-def]
        time.sleep(0.05)
        calls.append(inputs["x"].shape[0])
        return {"y": inputs["x"] * 2}

    async def scenario() -> tuple[list, list]:
        from concurrent.futures import ThreadPoolExecutor

        params = BatchingParameters(max_batch_size=4, max_enqueued_batches=1, num_batch_threads=1,
                                    allowed_batch_sizes=(2, 4))
        batcher = Batcher(params, ThreadPoolExecutor(2), Registry())
        tasks = [batcher.submit("k", slow, {"x": np.array([float(i)])}) for i in range(12)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        with pytest.raises(ServingError, match="Task size 5 is larger than maximum input batch size 4"):
            await batcher.submit("k", slow, {"x": np.zeros(5)})
        return results, calls

    results, calls = asyncio.run(scenario())
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, ServingError)]
    assert refused and all(r.code == "UNAVAILABLE" for r in refused)
    assert "queue to which this task was submitted is full" in refused[0].message
    assert all(float(r["y"][0]) % 2 == 0 for r in ok)  # each caller got its own row back
    assert max(calls) == 4 and all(c in (1, 2, 4) for c in calls)


def test_inference_timeout_answers_deadline_exceeded_and_spares_the_rest() -> None:
    """The server-wide timeout (one timer for every request): a late request answers DEADLINE_EXCEEDED,
    requests in time are untouched, and a cancellation from outside is not mistaken for the timeout."""
    from serving.api.service import Service

    async def scenario() -> tuple[list, bool]:
        service = Service(backend=None, metrics=Registry(), timeout_seconds=0.1)  # type: ignore[arg-type]

        async def work(seconds: float) -> float:
            await asyncio.sleep(seconds)
            return seconds

        async def one(seconds: float):  # type: ignore[no-untyped-def]
            try:
                return await service.bounded(work(seconds))
            except ServingError as exc:
                return exc.code

        results = await asyncio.gather(one(0.01), one(0.5), one(0.02), one(0.3), one(0.05))
        outside = asyncio.get_running_loop().create_task(service.bounded(work(0.5)))
        await asyncio.sleep(0.02)
        outside.cancel()
        try:
            await outside
            cancelled = False
        except asyncio.CancelledError:
            cancelled = True
        after = await one(0.01)  # the queue keeps working after expiries and cancellations
        return results + [after], cancelled

    results, cancelled = asyncio.run(scenario())
    assert results == [0.01, "DEADLINE_EXCEEDED", 0.02, "DEADLINE_EXCEEDED", 0.05, 0.01]
    assert cancelled


def test_predicted_classes_counted_alike_for_few_and_many_rows() -> None:
    from serving.api.service import Service

    rng = np.random.default_rng(3)
    for rows in (1, 16, 17, 300):
        scores = rng.random((rows, 1)).astype(np.float32)
        scores[0, 0] = np.nan  # counted as class 0, as numpy's comparison does
        service = Service(backend=None, metrics=Registry())  # type: ignore[arg-type]
        service.count_classes("m", 1, {"p": scores})
        positives = int(np.count_nonzero(scores >= 0.5))
        assert service.metrics.predictions.value(("m", "1", "1")) == positives
        assert service.metrics.predictions.value(("m", "1", "0")) == rows - positives


def test_server_batches_concurrent_requests(model_store: Path, tmp_path: Path) -> None:
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 32 } batch_timeout_micros { value: 2000 } "
                      "num_batch_threads { value: 1 } max_enqueued_batches { value: 100 }")
    server = start_server(tmp_path, f"--model_name={MODEL}", f"--model_base_path={model_store / MODEL}",
                          "--enable_batching", f"--batching_parameters_file={params}")
    try:
        expected = httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json=BODY).json()
        results: list = []

        def worker() -> None:
            with httpx.Client(base_url=server.rest_url) as client:
                for _ in range(5):
                    results.append(client.post(f"/v1/models/{MODEL}:predict", json=BODY).json())
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Same answer for every caller; a batch of 8 may take another oneDNN kernel than a batch of 1, so the
        # last float digit can differ with the batch size a request landed in (TF Serving batches alike).
        assert len(results) == 40 and all(
            r.keys() == expected.keys() and np.allclose(r["predictions"], expected["predictions"], rtol=1e-6, atol=0)
            for r in results)
        metrics = httpx.get(f"{server.rest_url}/monitoring/prometheus/metrics").text
        sizes = ":tensorflow:serving:batching_session:processed_batch_size_bucket"
        single = metric_value(metrics, sizes, le="2")  # batches of size 1 (TF buckets)
        total = metric_value(metrics, sizes, le="+Inf")
        assert total > single  # some batches merged several requests
    finally:
        server.stop()


# ---- auth + audit ----------------------------------------------------------------------------------

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
        wrong = httpx.post(f"{url}/v1/models/{MODEL}:predict", json=BODY, headers={"Authorization": "Bearer " + "b" * 32})
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


# ---- canary + promote/rollback ---------------------------------------------------------------------

def test_canary_split_and_stickiness() -> None:
    router = CanaryRouter.from_dict({"models": {"m": {"stable": 90, "canary": 10}}})
    picks = [router.route("m", {"stable", "canary"}) for _ in range(4000)]
    assert 0.07 < picks.count("canary") / len(picks) < 0.13
    assert len({router.route("m", {"stable", "canary"}, "client-42") for _ in range(50)}) == 1
    assert router.route("m", {"stable"}) == "stable"  # missing labels are skipped
    assert router.route("other", {"stable"}) is None


def test_canary_routing_promote_and_rollback(model_store: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path / "models.config", {MODEL: str(model_store / MODEL)},
                          labels={MODEL: {"stable": 1, "canary": 2}})
    canary = tmp_path / "canary.json"
    canary.write_text(json.dumps({"models": {MODEL: {"stable": 50, "canary": 50}}}))
    server = start_server(tmp_path, f"--model_config_file={config}", f"--canary_config_file={canary}")
    try:
        def versions(client_id: str | None = None, n: int = 30) -> set[str]:
            seen = set()
            headers = {"X-Client-Id": client_id} if client_id else {}
            with httpx.Client(base_url=server.rest_url, headers=headers) as client:
                for _ in range(n):
                    client.post(f"/v1/models/{MODEL}:predict", json=BODY)
            text = httpx.get(f"{server.rest_url}/monitoring/prometheus/metrics").text
            return {labels["version"] for labels, _ in metric_samples(text, "esteira_requests_total")
                    if labels["api"] == "predict"}

        assert versions() == {"1", "2"}
        args = [f"--model={MODEL}", f"--model_config_file={config}", f"--server={server.grpc_target}"]
        assert promote_main(args) == 0
        assert read_model_config(config).model_config_list.config[0].version_labels["stable"] == 2
        stable = httpx.post(f"{server.rest_url}/v1/models/{MODEL}/labels/stable:predict", json=BODY).json()
        v2 = httpx.post(f"{server.rest_url}/v1/models/{MODEL}/versions/2:predict", json=BODY).json()
        assert stable == v2
        assert rollback_main(args + ["--label=stable", "--version=1"]) == 0
        assert read_model_config(config).model_config_list.config[0].version_labels["stable"] == 1
        assert rollback_main(args + ["--version=9"]) == 1
        assert "refused" in capsys.readouterr().err
        assert read_model_config(config).model_config_list.config[0].version_labels["canary"] == 2  # unchanged
    finally:
        server.stop()


# ---- gateway mode ----------------------------------------------------------------------------------

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


# ---- metrics, probes, robustness -------------------------------------------------------------------

def test_metrics_names_and_drift(model_store: Path, tmp_path: Path) -> None:
    # Its own server: drift is a property of everything a version has seen, so requests from other
    # tests on a shared server would change what this test measures.
    config = write_config(tmp_path / "models.config", {MODEL: str(model_store / MODEL)},
                          labels={MODEL: {"stable": 1, "canary": 2}})
    server = start_server(tmp_path, f"--model_config_file={config}", "--file_system_poll_wait_seconds=0")
    try:
        check_metrics_names_and_drift(server.rest_url)
    finally:
        server.stop()


def check_metrics_names_and_drift(url: str) -> None:
    for seed in range(5):
        httpx.post(f"{url}/v1/models/{MODEL}/versions/1:predict",
                   json={"signature_name": "predict_raw", "instances": [raw_row(seed)]})
    shifted = {k: v + 10 for k, v in raw_row(0).items()}
    for _ in range(5):
        httpx.post(f"{url}/v1/models/{MODEL}/versions/2:predict", json={"signature_name": "predict_raw", "instances": [shifted]})
    response = httpx.get(f"{url}/monitoring/prometheus/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric_value(text, ":tensorflow:serving:request_latency_bucket", model_name="demo", API="predict",
                        entrypoint="REST", le="10") is not None  # TF Serving's names and bucket bounds
    assert metric_value(text, ":tensorflow:serving:request_count", model_name="demo", status="OK") >= 10
    psi = {labels["version"]: value for labels, value in metric_samples(text, "esteira_feature_drift_psi")
           if labels["model"] == "demo" and labels["feature"] == "feature_3"}
    assert psi["2"] > 1.0 and psi["2"] > psi["1"]  # shifted inputs drift, in-distribution ones much less
    per_class = [value for labels, value in metric_samples(text, "esteira_predictions_total")
                 if labels["model"] == "demo" and labels["version"] == "2"]
    assert per_class and sum(per_class) == 5  # one predicted class counted per row sent to version 2
    assert "process_resident_memory_bytes" in text and "esteira_request_size_bytes_bucket" in text
    assert httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/readyz").json() == {"status": "ready"}


def test_oversized_and_slow_clients_do_not_hurt(model_store: Path, tmp_path: Path) -> None:
    import socket

    server = start_server(tmp_path, f"--model_name={MODEL}", f"--model_base_path={model_store / MODEL}",
                          "--rest_api_max_body_bytes=4096", "--request_read_timeout_seconds=0.5")
    try:
        big = httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict",
                         content=b'{"instances": [' + b"1.0," * 5000 + b"1.0]}")
        assert big.status_code == 413 and "exceeds the limit of 4096 bytes" in big.json()["error"]
        with socket.create_connection(("127.0.0.1", server.server.rest_port)) as slow:
            slow.sendall(b"POST /v1/models/demo:predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
            slow.settimeout(5)
            reply = slow.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408")
        assert httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json=BODY).status_code == 200
    finally:
        server.stop()


# ---- CLI -------------------------------------------------------------------------------------------

def test_cli_flag_errors(capsys) -> None:  # type: ignore[no-untyped-def]
    assert serve_main(["--model_base_path=/x", "--bogus=1"]) == 2
    assert "unknown argument: --bogus=1" in capsys.readouterr().err
    assert serve_main([]) == 2
    assert "model_base_path" in capsys.readouterr().err
    assert serve_main(["--model_base_path=/x", "--batching_parameters_file=/b"]) == 2
    assert "enable_batching" in capsys.readouterr().err
    assert serve_main(["--model_config_file=/does/not/exist"]) == 1
    assert "cannot read model config file" in capsys.readouterr().err


def test_cli_predict_rest_and_grpc(shared_server, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    body = tmp_path / "input.json"
    body.write_text(json.dumps(BODY))
    assert predict_main(["--model", MODEL, "--input", str(body), "--server", shared_server.rest_url, "--version", "1"]) == 0
    rest = json.loads(capsys.readouterr().out)["predictions"]
    assert predict_main(["--model", MODEL, "--input", str(body), "--server", "grpc://" + shared_server.grpc_target,
                         "--version", "1"]) == 0
    grpc_out = json.loads(capsys.readouterr().out)["outputs"]["probabilities"]
    assert np.allclose(rest, grpc_out)
    assert predict_main(["--model", "nope", "--input", str(body), "--server", shared_server.rest_url]) == 1
    assert "NOT_FOUND: Servable not found for request: Latest(nope)" in capsys.readouterr().err
    assert predict_main(["--model", MODEL, "--input", str(tmp_path / "missing.json")]) == 1


def test_startup_objects_frozen_later_ones_collectable() -> None:
    """Full collections skip what existed at startup; cycles made afterwards (a later version) are still freed."""
    import gc
    import weakref

    from serving.server import freeze_startup_objects

    class Node:
        pass

    try:
        frozen = freeze_startup_objects()
        # TensorFlow's objects, at least; server threads left by earlier tests may free a few frozen ones
        assert frozen > 10_000 and 0.99 * frozen <= gc.get_freeze_count() <= frozen
        later = Node()
        later.self = later  # a reference cycle: only the cycle collector frees it
        alive = weakref.ref(later)
        del later
        gc.collect()
        assert alive() is None
    finally:
        gc.unfreeze()
