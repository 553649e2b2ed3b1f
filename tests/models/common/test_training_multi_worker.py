"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1 train to completion with identical weights."""

from __future__ import annotations

import json
import socket
import subprocess

import numpy as np

TIMEOUT_S = 150


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_two_workers_end_with_identical_weights(tmp_path, script_env, script_command) -> None:
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    try:
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            processes.append(
                subprocess.Popen(
                    script_command("multi_worker_train.py", "--out", tmp_path),
                    env={**script_env, "TF_CONFIG": json.dumps(tf_config)},
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                )
            )
        for index, process in enumerate(processes):
            _, stderr = process.communicate(timeout=TIMEOUT_S)
            assert process.returncode == 0, f"worker {index} failed:\n{stderr[-3000:]}"
    finally:
        for process in processes:  # on any failure or timeout, leave nothing running
            if process.poll() is None:
                process.kill()
                process.wait()

    reports = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert [r["replicas"] for r in reports] == [2, 2]
    assert [r["chief"] for r in reports] == [True, False]
    assert all(r["epochs"] == [0, 1, 2] and r["moved"] for r in reports)
    # One configured seed draws the same on every worker; re-seeded, each worker has its own.
    assert reports[0]["draw_same_seed"] == reports[1]["draw_same_seed"]
    assert reports[0]["draw_reseeded"] != reports[1]["draw_reseeded"]
    weights = []
    for i in range(2):
        with np.load(tmp_path / f"worker{i}.npz") as archive:
            weights.append([archive[name] for name in sorted(archive.files)])
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))
    assert (tmp_path / "model" / "saved_model.pb").exists()  # the chief's copy
    assert not list(tmp_path.glob(".worker-*"))  # the other worker's scratch copy is gone
