"""A disk that fills up (a 1 MiB tmpfs this module mounts) under the Pusher, the access audit log and the request
log: the Pusher leaves no partial version and says why; the server keeps answering and reports the audit failure
on a metric and in its log, or refuses the request when the audit is required (the default with an audit log).
The prediction memory behind the feedback API holds no file (it is bounded in memory), so it has no disk to fill."""
from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from faults_helpers import MODEL, PREDICT_BODY, Answered, fill, grpc_load, small_disk
from serving_helpers import metric_value, start_server
from tfx.types import standard_artifacts

from components.serving_pusher.executor import PushError, ServingPusherExecutor, directory_digest
from privacy.audit import verify
from serving.demo_model import export_demo_model

METRICS = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with small_disk(tmp_path_factory.mktemp("small") / "disk") as mounted:
        yield mounted


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    export_demo_model(root / MODEL, 1)
    return root / MODEL


@pytest.fixture
def filled(disk: Path) -> Iterator[Path]:
    """The disk with (almost) no space left for the test; the space comes back after it."""
    filler = fill(disk)
    yield filler
    filler.unlink(missing_ok=True)


def _push(model_dir: Path, base: Path, root: Path) -> standard_artifacts.PushedModel:
    model = standard_artifacts.Model()
    model.uri = str(model_dir)
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(root / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(root / "pushed")
    ServingPusherExecutor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
                               {"push_destination": json.dumps({"filesystem": {"base_directory": str(base)}})})
    return pushed


def test_the_pusher_on_a_full_disk_leaves_no_partial_version_and_says_why(
        disk: Path, store: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(store / "1", model_dir / "Format-Serving")
    base = disk / "serving" / MODEL
    base.mkdir(parents=True)
    filler = fill(disk, leave_bytes=64 * 1024)  # less than the SavedModel needs
    try:
        with pytest.raises(PushError) as refused:
            _push(model_dir, base, tmp_path)
        assert str(base) in str(refused.value) and "nothing was published" in str(refused.value)
        assert list(base.iterdir()) == []  # neither a version folder nor the staging copy
    finally:
        filler.unlink()
    pushed = _push(model_dir, base, tmp_path)  # space is back: the same push completes
    [version] = list(base.iterdir())
    assert pushed.get_string_custom_property("pushed_destination") == str(version)
    assert directory_digest(version) == directory_digest(model_dir / "Format-Serving")
    shutil.rmtree(disk / "serving")


def _server(tmp: Path, store: Path, disk: Path, name: str, *flags: str,  # type: ignore[no-untyped-def]
            requests_on_disk: bool = True):
    """A server whose audit log is on the small disk, and its request log too unless ``requests_on_disk`` is
    false (a request log that drops a file frees space on the disk it shares, which an audit test must not see)."""
    prefix = (disk if requests_on_disk else tmp) / name / "requests" / MODEL
    config = tmp / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{store}" model_platform: "tensorflow" '
        f'logging_config {{ log_collector_config {{ type: "file" filename_prefix: "{prefix}" }} '
        f'sampling_config {{ sampling_rate: 1.0 }} }} }} }}\n')
    audit = disk / name / "access.log"
    server = start_server(tmp, f"--model_config_file={config}", f"--audit_log_file={audit}",
                          "--file_system_poll_wait_seconds=0", *flags)
    return server, audit


def _predict(server) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json=PREDICT_BODY, timeout=10)


def _metric(server, name: str, **labels: str) -> float | None:  # type: ignore[no-untyped-def]
    return metric_value(httpx.get(server.rest_url + METRICS).text, name, **labels)


def _until_refused(server, limit: int = 200) -> tuple[int, httpx.Response]:  # type: ignore[no-untyped-def]
    """Requests until the first that is not answered 200 (a full tmpfs still takes bytes into the audit file's
    last page); how many were answered before it, and it."""
    for count in range(limit):
        response = _predict(server)
        if response.status_code != 200:
            return count, response
    raise AssertionError(f"{limit} requests were all answered on a full disk")


def test_with_the_audit_required_a_request_whose_line_cannot_be_written_is_refused(
        disk: Path, store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server, audit = _server(tmp_path, store, disk, "required", requests_on_disk=False)
    try:
        assert _predict(server).status_code == 200
        before = verify(audit).records
        filler = fill(disk)
        with caplog.at_level(logging.ERROR, logger="serving"):
            fitted, first = _until_refused(server)
            refused = [first] + [_predict(server) for _ in range(4)]
            answered = Answered()
            grpc_load(server.grpc_target, answered, threading.Event(), 5)
        assert [r.status_code for r in refused] == [503] * 5
        assert "access audit log cannot be written" in refused[0].json()["error"]
        assert answered.ok == [] and answered.failed == {f"grpc-{grpc.StatusCode.UNAVAILABLE.name}": 5}
        assert _metric(server, "esteira_audit_write_failures_total") == 10  # the scrape itself is not audited
        assert _metric(server, "esteira_audit_log_writable") == 0
        failures = [r for r in caplog.records if "could not append to the audit log" in r.getMessage()]
        assert len(failures) == 1 and str(audit) in failures[0].getMessage()  # logged once, not per request
        filler.unlink()
        assert _predict(server).status_code == 200  # space is back: answered and audited again
        assert _metric(server, "esteira_audit_log_writable") == 1
        state = verify(audit)
        # every answered request has its line; the refused ones left nothing behind, not even half a line
        assert state.torn_bytes == 0 and state.records == before + fitted + 1
    finally:
        server.stop()


def test_without_the_audit_required_the_server_answers_and_counts_what_it_could_not_write(
        disk: Path, store: Path, tmp_path: Path) -> None:
    server, audit = _server(tmp_path, store, disk, "optional", "--audit_required=false")
    try:
        assert _predict(server).status_code == 200
        filler = fill(disk)
        try:
            statuses = [_predict(server).status_code for _ in range(60)]
            assert statuses == [200] * 60
            assert (_metric(server, "esteira_audit_write_failures_total") or 0) > 0
            assert _metric(server, "esteira_audit_log_writable") == 0
        finally:
            filler.unlink()
        logged = _metric(server, ":tensorflow:serving:request_log_count", model_name=MODEL, status_code="OK") or 0
        assert _predict(server).status_code == 200
        assert _metric(server, "esteira_audit_log_writable") == 1
        state = verify(audit)
        assert state.torn_bytes == 0 and state.records >= 2
        deadline = time.monotonic() + 10  # the request log's writer lived through the full disk
        while (_metric(server, ":tensorflow:serving:request_log_count", model_name=MODEL, status_code="OK")
               or 0) <= logged:
            assert time.monotonic() < deadline, "the request log stopped writing after the disk was full"
            time.sleep(0.1)
    finally:
        server.stop()
