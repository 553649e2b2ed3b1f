"""Same seed and data give bit-identical weights across two separate processes (CPU, one replica)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from models.common.determinism import make_deterministic


def _weights(path: str) -> list[np.ndarray]:
    with np.load(path) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


def test_same_seed_same_weights_bit_for_bit(tmp_path, script_env, script_command) -> None:
    """Seed 7 twice, seed 8 once, in parallel, each in a fresh process. The seed-7 processes also
    train with DP-SGD afterwards (re-seeded): its noise must follow the seed too."""
    runs = {"a": (7, "--also-dp", "fast"), "b": (7, "--also-dp", "fast"), "other": (8,)}
    processes = {}
    for name, (seed, *extra) in runs.items():
        (tmp_path / name).mkdir()
        processes[name] = subprocess.Popen(
            script_command(
                "train_small.py", "--seed", seed, *extra, "--out", tmp_path / name / "report.json"
            ),
            env=script_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
    try:
        for name, process in processes.items():
            _, stderr = process.communicate(timeout=120)
            assert process.returncode == 0, f"run {name} failed:\n{stderr[-3000:]}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()

    a, b, other = (_weights(str(tmp_path / name / "report.json.npz")) for name in runs)
    dp_a, dp_b = (_weights(str(tmp_path / name / "report.json.dp.npz")) for name in ("a", "b"))
    assert json.loads((tmp_path / "a" / "report.json").read_text())["steps_at_end"] == 48
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), "same seed, different weights"
    assert not all(np.array_equal(x, y) for x, y in zip(a, other, strict=True)), "the seed has no effect"
    assert all(np.array_equal(x, y) for x, y in zip(dp_a, dp_b, strict=True)), "same seed, different DP weights"
    assert not all(np.array_equal(x, y) for x, y in zip(a, dp_a, strict=True)), "DP training changed nothing"


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
def test_bad_seed_is_refused(seed: object) -> None:
    with pytest.raises(ValueError, match="seed must be an integer"):
        make_deterministic(seed)  # type: ignore[arg-type]
