"""Which store a run goes to, and failing fast with the URI and the fix when it is unreachable."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tracking.errors import TrackingUnavailable
from tracking.store import TrackingTarget, check_reachable, resolve_target


def test_default_is_a_sqlite_store_under_the_given_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    target = resolve_target(None, tmp_path / "mlflow")
    assert target.uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert target.artifact_location == (tmp_path / "mlflow" / "artifacts").as_uri()
    assert not target.is_remote


def test_environment_overrides_the_configured_uri(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    target = resolve_target("http://mlflow.team:5000", tmp_path)
    assert target == TrackingTarget("http://127.0.0.1:5999") and target.artifact_location is None
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_target("http://mlflow.team:5000", tmp_path).uri == "http://mlflow.team:5000"


def test_unreachable_server_names_the_uri_and_the_fix() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(TrackingUnavailable) as caught:
        check_reachable(TrackingTarget(uri))
    message = str(caught.value)
    assert uri in message and "MLFLOW_TRACKING_URI" in message and "tracking.required: false" in message
    assert "\n" not in message
