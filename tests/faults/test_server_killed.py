"""The model server SIGKILLed under REST and gRPC load, then restarted: every request it answered OK has its
audit line, the chain verifies (a torn last line is reported as torn, set aside, and the chain goes on after
it), and no request is answered from a half-written version."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from faults_helpers import MODEL, Answered, ServerProcess, grpc_load, rest_load
from serving_helpers import write_config

from privacy.audit import read_records, verify
from serving.demo_model import export_demo_model

THREADS = 2  # per protocol
LIMIT = 150  # requests per thread at most: the kill comes first
TORN = b'{"hash":"4f2a","prev":"'  # what a write cut short by the kill leaves behind


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("killed")
    store = root / "models" / MODEL
    export_demo_model(store, 1, warmup_records=2)
    export_demo_model(root / "later", 2, bias=3.0)
    config = write_config(root / "models.config", {MODEL: str(store)}, policy="all {}")
    audit = root / "audit" / "access.log"
    server = ServerProcess(root / "server.log", f"--model_config_file={config}", f"--audit_log_file={audit}",
                           "--file_system_poll_wait_seconds=1")
    server.start()
    try:
        yield {"root": root, "store": store, "audit": audit, "server": server}
    finally:
        server.stop()


def _load_then_kill(server: ServerProcess, answered: Answered, after_ok: int) -> None:
    stop = threading.Event()
    threads = [threading.Thread(target=rest_load, args=(server.rest_url, answered, stop, LIMIT))
               for _ in range(THREADS)]
    threads += [threading.Thread(target=grpc_load, args=(server.grpc_target, answered, stop, LIMIT))
                for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(answered.ok) < after_ok and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill(signal.SIGKILL)  # mid-load: requests are in flight on both protocols
    for thread in threads:
        thread.join(60)
    stop.set()


def test_every_request_answered_before_sigkill_has_its_audit_line(world: dict) -> None:
    answered = Answered()
    _load_then_kill(world["server"], answered, after_ok=120)
    assert len(answered.ok) >= 120 and answered.failed, (len(answered.ok), answered.failed)  # killed mid-load
    state = verify(world["audit"])
    audited = {record.get("request_id") for record in read_records(world["audit"])}
    missing = [rid for rid in answered.ok if rid not in audited]
    assert not missing, f"{len(missing)} of {len(answered.ok)} answered requests have no audit line"
    assert state.records >= len(answered.ok) and state.torn_bytes == 0
    world["answered_before"] = answered.ok


def test_a_torn_last_line_is_reported_as_torn_and_the_restarted_server_continues_the_chain(world: dict) -> None:
    audit: Path = world["audit"]
    before = verify(audit)
    with open(audit, "ab") as handle:
        handle.write(TORN)
    cli = subprocess.run([sys.executable, "-m", "cli", "audit", "verify", str(audit)], capture_output=True,
                         text=True)
    assert cli.returncode == 0, cli.stderr
    assert f"ok: {before.records} records" in cli.stdout and f"torn last line of {len(TORN)} bytes" in cli.stderr
    assert verify(audit).torn_bytes == len(TORN)

    # a version being written while the server was down: its variables only half there
    half = world["store"] / "2"
    shutil.copytree(world["root"] / "later" / "2", half)
    data = next((half / "variables").glob("variables.data-*"))
    whole = data.read_bytes()
    data.write_bytes(whole[: len(whole) // 2])

    server: ServerProcess = world["server"]
    server.start()
    answered = Answered()
    stop = threading.Event()
    grpc_load(server.grpc_target, answered, stop, 40)
    assert answered.versions == {1} and not answered.failed  # never the half-written version
    status = httpx.get(f"{server.rest_url}/v1/models/{MODEL}/versions/2").json()["model_version_status"][0]
    assert status["state"] == "END" and status["status"]["error_code"] != "OK", status

    data.write_bytes(whole)  # the copy completes: the folder changed, so the version is loaded again
    deadline = time.monotonic() + 60
    while httpx.get(f"{server.rest_url}/v1/models/{MODEL}/versions/2").json()[
            "model_version_status"][0]["state"] != "AVAILABLE":
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.3)
    later = Answered()
    grpc_load(server.grpc_target, later, stop, 20)
    assert later.versions == {2} and not later.failed

    state = verify(audit)
    assert state.torn_bytes == 0 and state.records > before.records
    records = list(read_records(audit))
    [event] = [r for r in records if r.get("audit_event") == "torn_tail_set_aside"]
    assert (audit.parent / event["kept_in"]).read_bytes() == TORN and event["bytes"] == len(TORN)
    assert records.index(event) == before.records  # sealed right after the last whole record
    audited = {r.get("request_id") for r in records}
    assert set(world["answered_before"]) | set(answered.ok) | set(later.ok) <= audited
    print(json.dumps({"records": state.records, "answered_before_kill": len(world["answered_before"]),
                      "answered_after_restart": len(answered.ok) + len(later.ok)}))
