"""Dynamic batching: the Batcher's merging and refusals, and a running server batching concurrent requests."""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from serving_helpers import MODEL, metric_value, start_server

from serving.backends.batching import Batcher
from serving.config import BatchingParameters
from serving.demo_model import raw_row
from serving.observability.metrics import Registry
from serving.protocol.errors import ServingError

BODY = {"signature_name": "predict_raw", "instances": [raw_row(1)]}


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
    assert refused and all(r.code == grpc.StatusCode.UNAVAILABLE for r in refused)
    assert "queue to which this task was submitted is full" in refused[0].message
    assert all(float(r["y"][0]) % 2 == 0 for r in ok)  # each caller got its own row back
    assert max(calls) == 4 and all(c in (1, 2, 4) for c in calls)


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
