"""The metrics a running server exposes: TF Serving's names and buckets, drift PSI, per-class counts, probes."""
from __future__ import annotations

from pathlib import Path

import httpx
from serving_helpers import MODEL, metric_samples, metric_value, start_server, write_config

from serving.demo_model import raw_row


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
        httpx.post(f"{url}/v1/models/{MODEL}/versions/2:predict",
                   json={"signature_name": "predict_raw", "instances": [shifted]})
    response = httpx.get(f"{url}/monitoring/prometheus/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric_value(text, ":tensorflow:serving:request_latency_bucket", model_name="demo", API="predict",
                        entrypoint="REST", le="10") is not None  # TF Serving's names and bucket bounds
    counts = [value for labels, value in metric_samples(text, ":tensorflow:serving:request_count")
              if labels["model_name"] == "demo" and labels["status"] == "OK"]  # one series per version
    assert sum(counts) >= 10
    psi = {labels["version"]: value for labels, value in metric_samples(text, "esteira_feature_drift_psi")
           if labels["model"] == "demo" and labels["feature"] == "feature_3"}
    assert psi["2"] > 1.0 and psi["2"] > psi["1"]  # shifted inputs drift, in-distribution ones much less
    per_class = [value for labels, value in metric_samples(text, "esteira_predictions_total")
                 if labels["model"] == "demo" and labels["version"] == "2"]
    assert per_class and sum(per_class) == 5  # one predicted class counted per row sent to version 2
    assert "process_resident_memory_bytes" in text and "esteira_request_size_bytes_bucket" in text
    assert httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/readyz").json() == {"status": "ready"}
