"""Versions come and go on disk: load before unload, no failed request during a swap, broken folders reported."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from serving_helpers import MODEL, start_server, write_config
from tensorflow_serving.config import model_server_config_pb2

from serving.client import GrpcClient, ServingClientError
from serving.config import single_model_config
from serving.core.manager import ModelManager
from serving.demo_model import export_demo_model, raw_row
from serving.observability.metrics import Registry

BODY = {"signature_name": "predict_raw", "instances": [raw_row(1)]}


def _copy_version(store: Path, base: Path, version: int, as_version: int | None = None) -> Path:
    target = base / str(as_version or version)
    tmp = base / f".copy-{target.name}"
    shutil.copytree(store / MODEL / str(version), tmp)
    tmp.rename(target)
    return target


def _wait(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_swap_under_load_fails_no_request(model_store: Path, tmp_path: Path) -> None:
    base = tmp_path / MODEL
    base.mkdir()
    _copy_version(model_store, base, 1)
    server = start_server(tmp_path, f"--model_name={MODEL}", f"--model_base_path={base}",
                          "--file_system_poll_wait_seconds=1")
    failures: list[str] = []
    versions_seen: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server.rest_url, timeout=10) as client:
            while not stop.is_set():
                response = client.post(f"/v1/models/{MODEL}:predict", json=BODY)
                if response.status_code != 200:
                    failures.append(response.text)
                status = client.get(f"/v1/models/{MODEL}").json()["model_version_status"]
                versions_seen.update(s["version"] for s in status if s["state"] == "AVAILABLE")
    try:
        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        _copy_version(model_store, base, 2)  # latest{1}: 2 loads, then 1 unloads
        manager = server.server.service.backend.manager  # type: ignore[union-attr]
        _wait(lambda: manager.models[MODEL].versions.get(1) is not None and
                 manager.models[MODEL].versions[1].state == "END")
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
        status = httpx.get(f"{server.rest_url}/v1/models/{MODEL}").json()["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [("2", "AVAILABLE"), ("1", "END")]
        assert failures == []
        assert versions_seen >= {"1", "2"}
    finally:
        stop.set()
        server.stop()


def test_corrupt_version_is_reported_and_does_not_disturb(model_store: Path, tmp_path: Path) -> None:
    base = tmp_path / MODEL
    base.mkdir()
    _copy_version(model_store, base, 1)
    manager = ModelManager(single_model_config(MODEL, str(base)), metrics=Registry(), poll_seconds=0)
    manager.start()
    broken = base / "3"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    manager.poll()
    status = {s.version: s for s in manager.status(MODEL).model_version_status}
    assert status[3].state == 50 and status[3].status.error_message  # END with its error
    assert status[1].state == 30  # still AVAILABLE
    assert manager.resolve(MODEL).number == 1
    half = base / "4"
    half.mkdir()  # a half-written export: no saved_model.pb yet
    manager.poll()
    assert "Could not find SavedModel" in manager.status(MODEL, 4).model_version_status[0].status.error_message
    shutil.rmtree(half)
    export_demo_model(tmp_path / "staging", 4)
    shutil.copytree(tmp_path / "staging" / "4", half)  # completed later: retried because its content changed
    manager.poll()
    assert manager.resolve(MODEL).number == 4
    manager.stop()


def test_version_policies(model_store: Path, tmp_path: Path) -> None:
    base = tmp_path / MODEL
    base.mkdir()
    _copy_version(model_store, base, 1)
    _copy_version(model_store, base, 2)
    _copy_version(model_store, base, 1, as_version=3)
    for policy, expected in (("latest { num_versions: 2 }", {2, 3}), ("all {}", {1, 2, 3}),
                             ("specific { versions: 1 versions: 3 }", {1, 3})):
        config = model_server_config_pb2.ModelServerConfig()
        from google.protobuf import text_format

        text_format.Parse(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}" '
                          f'model_platform: "tensorflow" model_version_policy {{ {policy} }} }} }}', config)
        manager = ModelManager(config, metrics=Registry(), poll_seconds=0)
        manager.start()
        available = {v.number for v in manager.models[MODEL].available()}
        manager.stop()
        assert available == expected, policy


def test_labels_reload_and_several_models(model_store: Path, tmp_path: Path) -> None:
    config_path = write_config(tmp_path / "models.config",
                               {MODEL: str(model_store / MODEL), "other": str(model_store / MODEL)},
                               labels={MODEL: {"stable": 1}}, policy="all {}")
    server = start_server(tmp_path, f"--model_config_file={config_path}")
    try:
        with GrpcClient(server.grpc_target) as client:
            assert client.status("other").model_version_status[0].version == 2
            from serving.config import read_model_config

            config = read_model_config(config_path)
            config.model_config_list.config[0].version_labels["canary"] = 2
            client.reload(config)
            import numpy as np

            assert client.predict(MODEL, {k: np.float32([v]) for k, v in raw_row(1).items()}, signature="predict_raw",
                                  label="canary")["probabilities"].shape == (1, 1)
            config.model_config_list.config[0].version_labels["canary"] = 7
            with pytest.raises(ServingClientError) as info:
                client.reload(config)
            assert info.value.code == "FAILED_PRECONDITION"
            assert "Request to assign label to version 7 of model demo" in info.value.message
            del config.model_config_list.config[1:]  # full replacement: "other" goes away
            config.model_config_list.config[0].version_labels["canary"] = 2
            client.reload(config)
            with pytest.raises(ServingClientError) as info:
                client.predict("other", {"examples": [b""]})
            assert info.value.code == "NOT_FOUND"
    finally:
        server.stop()


def test_warmup_runs_and_is_counted(shared_server) -> None:  # type: ignore[no-untyped-def]
    text = httpx.get(shared_server.rest_url + "/monitoring/prometheus/metrics").text
    warm = [line for line in text.splitlines() if line.startswith(":tensorflow:serving:model_warmup_records_read{")]
    assert warm and float(warm[0].rsplit(" ", 1)[1]) == 2
    assert ':tensorflow:cc:saved_model:load_attempt_count{model_path="' in text


def test_bad_warmup_fails_the_load(model_store: Path, tmp_path: Path) -> None:
    base = tmp_path / MODEL
    base.mkdir()
    target = _copy_version(model_store, base, 2)
    (target / "assets.extra").mkdir(exist_ok=True)
    (target / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"garbage")
    manager = ModelManager(single_model_config(MODEL, str(base)), metrics=Registry(), poll_seconds=0)
    manager.start()
    entry = manager.status(MODEL).model_version_status[0]
    assert entry.state == 50 and "warmup" in entry.status.error_message.lower()
    assert manager.not_ready() == [MODEL]
    manager.stop()


def test_an_unloaded_version_is_released_from_memory(model_store: Path, tmp_path: Path) -> None:
    """A replaced version's servable (its TensorFlow functions and variables) is gone once it is unloaded,
    not left for a full garbage collection that a busy server seldom runs (the soak's memory growth)."""
    import gc
    import weakref

    base = tmp_path / MODEL
    base.mkdir()
    _copy_version(model_store, base, 1)
    manager = ModelManager(single_model_config(MODEL, str(base)), metrics=Registry(), poll_seconds=0)
    manager.start()
    try:
        first = weakref.ref(manager.resolve(MODEL).servable)
        model = weakref.ref(first()._model)  # type: ignore[union-attr]
        _copy_version(model_store, base, 2)
        gc.disable()  # only the unload may collect: the test shows it does
        try:
            manager.poll()
            assert manager.resolve(MODEL).number == 2
            assert first() is None and model() is None, "the unloaded version is still in memory"
        finally:
            gc.enable()
    finally:
        manager.stop()
