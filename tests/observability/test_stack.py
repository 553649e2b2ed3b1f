"""The local stack stops exactly what it started, and its Prometheus config is valid."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from observability.stack import (
    StackConfig,
    _cmdline,
    _port_free,
    start_process,
    stop_processes,
    write_prometheus_config,
)


def test_stop_leaves_a_process_that_reused_the_pid(tmp_path: Path) -> None:
    process, _log = start_process("sleeper", ["sleep", "60"], tmp_path)
    pid_file = tmp_path / "pids" / "sleeper.pid"
    record = json.loads(pid_file.read_text())
    assert record["cmdline"] == ["sleep", "60"]
    try:
        pid_file.write_text(json.dumps({**record, "cmdline": ["sleep", "61"]}))  # another program now
        assert stop_processes(tmp_path) == []
        assert process.poll() is None and not pid_file.exists()
        pid_file.write_text(json.dumps(record))
        assert stop_processes(tmp_path) == ["sleeper"]
        assert process.wait(timeout=5) is not None and not _cmdline(process.pid)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_recorded_command_line_is_the_one_the_kernel_shows_after_exec(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Read just after Popen, /proc/<pid>/cmdline can still be empty (the exec has not set up argv yet):
    a script is then recorded as its interpreter's command line once it appears, so `down` stops it."""
    script = tmp_path / "sleeper"
    script.write_text("#!/bin/sh\nsleep 60\n")
    script.chmod(0o755)
    reads = iter([[]])
    monkeypatch.setattr("observability.stack._cmdline", lambda pid: next(reads, None) or _cmdline(pid))
    process, _log = start_process("sleeper", [str(script)], tmp_path)
    try:
        record = json.loads((tmp_path / "pids" / "sleeper.pid").read_text())
        assert record["cmdline"] == ["/bin/sh", str(script)]
        monkeypatch.undo()
        assert stop_processes(tmp_path) == ["sleeper"]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_stack_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: apt-get install prometheus (.ci/run installs it)")
    config = StackConfig(tmp_path, rest_port=18601, prometheus_port=19190, alertmanager_port=19193,
                         scrape_interval="1s")
    target = write_prometheus_config(config)
    text = target.read_text()
    assert "127.0.0.1:18601" in text and "127.0.0.1:19193" in text and "esteira-gateway" not in text
    result = subprocess.run([promtool, "check", "config", str(target)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_port_a_stopped_server_left_in_time_wait_is_free_and_a_listening_one_is_not() -> None:
    """README step 4: Ctrl-C on `make serve-demo`, then `make stack` on the same ports at once."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    try:
        assert not _port_free(port)
        accepted.close()  # the server closes first: its side of the connection stays in TIME_WAIT
        client.recv(1)
        listener.close()
        assert _port_free(port)
    finally:
        client.close()
        accepted.close()
        listener.close()
