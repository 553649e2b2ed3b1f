"""Canary routing by version label (canary.py), and label moves on a running server (serving/labels.py)."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from serving_helpers import MODEL, metric_samples, start_server, write_config

from serving.canary import CanaryRouter
from serving.config import read_model_config
from serving.demo_model import raw_row
from serving.labels import LabelChangeError, apply_version_labels

BODY = {"signature_name": "predict_raw", "instances": [raw_row(1)]}


def test_canary_split_and_stickiness() -> None:
    router = CanaryRouter.from_dict({"models": {"m": {"stable": 90, "canary": 10}}})
    picks = [router.route("m", {"stable", "canary"}) for _ in range(4000)]
    assert 0.07 < picks.count("canary") / len(picks) < 0.13
    assert len({router.route("m", {"stable", "canary"}, "client-42") for _ in range(50)}) == 1
    assert router.route("m", {"stable"}) == "stable"  # missing labels are skipped
    assert router.route("other", {"stable"}) is None


def test_canary_routing_promote_and_rollback(model_store: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "models.config", {MODEL: str(model_store / MODEL)},
                          labels={MODEL: {"stable": 1, "canary": 2}})
    canary = tmp_path / "canary.json"
    canary.write_text(json.dumps({"models": {MODEL: {"stable": 50, "canary": 50}}}))
    server = start_server(tmp_path, f"--model_config_file={config}", f"--canary_config_file={canary}")
    try:
        def versions(client_id: str | None = None, n: int = 30) -> set[str]:
            headers = {"X-Client-Id": client_id} if client_id else {}
            with httpx.Client(base_url=server.rest_url, headers=headers) as client:
                for _ in range(n):
                    client.post(f"/v1/models/{MODEL}:predict", json=BODY)
            text = httpx.get(f"{server.rest_url}/monitoring/prometheus/metrics").text
            return {labels["version"] for labels, _ in metric_samples(text, "esteira_requests_total")
                    if labels["api"] == "predict"}

        assert versions() == {"1", "2"}
        def move(labels: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
            return apply_version_labels(str(config), MODEL, labels, server=server.grpc_target)

        assert move({"stable": 2}) == ({"stable": 1, "canary": 2}, {"stable": 2, "canary": 2})  # canary promoted
        assert read_model_config(config).model_config_list.config[0].version_labels["stable"] == 2
        stable = httpx.post(f"{server.rest_url}/v1/models/{MODEL}/labels/stable:predict", json=BODY).json()
        v2 = httpx.post(f"{server.rest_url}/v1/models/{MODEL}/versions/2:predict", json=BODY).json()
        assert stable == v2
        move({"stable": 1})
        assert read_model_config(config).model_config_list.config[0].version_labels["stable"] == 1
        with pytest.raises(LabelChangeError, match="refused"):  # version 9 is not loaded
            move({"canary": 9})
        assert read_model_config(config).model_config_list.config[0].version_labels["canary"] == 2  # unchanged
    finally:
        server.stop()
