"""A training killed with SIGKILL after epoch k of n resumes at epoch k and completes n epochs."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

from models.common.checkpointing import backup_dir_for, read_backup_state

EPOCHS, KILL_AFTER = 4, 2


def _wait_for_output(process: subprocess.Popen, expected: str, timeout: float) -> None:
    """Read the child's stdout until `expected` appears; fail if it exits or time runs out."""
    assert process.stdout is not None
    fd, seen, deadline = process.stdout.fileno(), b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([fd], [], [], 0.2)
        chunk = os.read(fd, 4096) if readable else b""
        seen += chunk
        if expected.encode() in seen:
            return
        if readable and not chunk:  # end of file: the child exited
            raise AssertionError(f"training exited ({process.wait()}) before printing {expected!r}")
    raise AssertionError(f"no {expected!r} within {timeout} s")


def test_sigkilled_training_resumes_at_the_epoch_it_reached(
    tmp_path, script_env, script_command, run_script
) -> None:
    backup_dir = backup_dir_for(str(tmp_path / "backups"), "pipeline=demo;data=abc123;config=v1")
    first = subprocess.Popen(
        script_command(
            "train_small.py", "--epochs", EPOCHS, "--backup-dir", backup_dir,
            "--block-after-epoch", KILL_AFTER, "--out", tmp_path / "first.json",
        ),
        env=script_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_output(first, f"EPOCH_DONE {KILL_AFTER}", timeout=90)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    assert not (tmp_path / "first.json").exists()  # it really died before finishing

    state = read_backup_state(backup_dir)
    assert state is not None and state.epochs_completed == KILL_AFTER

    run_script(
        "train_small.py", "--epochs", EPOCHS, "--backup-dir", backup_dir,
        "--out", tmp_path / "second.json",
    )
    report = json.loads((tmp_path / "second.json").read_text())
    per_epoch = report["steps_per_epoch"]
    # Restored counters: from the backup, and the optimizer's step counter inside the model.
    assert report["resumed_from"] == {"epochs_completed": KILL_AFTER, "steps": KILL_AFTER * per_epoch}
    assert report["steps_at_start"] == KILL_AFTER * per_epoch
    assert report["epochs_run"] == list(range(KILL_AFTER, EPOCHS))
    assert report["steps_at_end"] == EPOCHS * per_epoch
    assert not os.path.exists(backup_dir)  # removed once the model was saved


def test_backup_dir_is_stable_per_key(tmp_path) -> None:
    root = str(tmp_path)
    assert backup_dir_for(root, "a") == backup_dir_for(root, "a")
    assert backup_dir_for(root, "a") != backup_dir_for(root, "b")
    assert os.path.dirname(backup_dir_for(root, "../../etc")) == root
    assert read_backup_state(backup_dir_for(root, "never-trained")) is None
