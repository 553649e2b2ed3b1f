"""Shared fixtures: small SavedModels exported into tmp dirs, and servers on free loopback ports."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest
from serving_helpers import MODEL, start_server, write_config

from serving.demo_model import export_demo_model
from serving.server import RunningServer


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<store>/demo/{1,2}``: version 2 answers differently (bias) so tests can tell them apart."""
    store = tmp_path_factory.mktemp("models")
    export_demo_model(store / MODEL, 1, warmup_records=2)
    export_demo_model(store / MODEL, 2, bias=3.0)
    return store


@pytest.fixture(scope="session")
def shared_server(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for read-only tests: model ``demo`` versions 1 and 2, labels stable=1, canary=2."""
    tmp = tmp_path_factory.mktemp("shared")
    config = write_config(tmp / "models.config", {MODEL: str(model_store / MODEL)},
                          labels={MODEL: {"stable": 1, "canary": 2}})
    server = start_server(tmp, f"--model_config_file={config}", "--file_system_poll_wait_seconds=0")
    yield server
    server.stop()
