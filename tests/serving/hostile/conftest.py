"""One model server with tight bounds, shared by the hostile-request suite."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest

pytest.register_assert_rewrite("hostile_helpers")

from hostile_helpers import SERVER_FLAGS, assert_serving  # noqa: E402 - imported after its rewrite is registered
from serving_helpers import MODEL, start_server  # noqa: E402

from serving.server import RunningServer  # noqa: E402


@pytest.fixture(scope="session")
def hostile_server(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("hostile"), f"--model_name={MODEL}",
                          f"--model_base_path={model_store / MODEL}", *SERVER_FLAGS)
    assert_serving(server, within=30)  # the first Predict builds the graph's call path
    yield server
    server.stop()
