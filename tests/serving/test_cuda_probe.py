"""The CUDA probe's lines are dropped from descriptor 2 while TensorFlow starts; every other line passes."""
from __future__ import annotations

import subprocess
import sys

PROBE = r"""
import os, sys
from serving.cuda_probe import cuda_probe_filtered
with cuda_probe_filtered():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    os.write(2, b"I0000 00:00:1.2   16411 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU ")
    os.write(2, b"will not be used.\nE0000 00:00:1.3 16411 cuda_platform.cc:52] failed call to cuInit: INTERNAL: ")
    os.write(2, b"CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
    os.write(2, b"E0000 00:00:1.4 16411 saved_model.cc:9] a real error\n")
    print("a Python warning", file=sys.stderr)
print("after the block", file=sys.stderr)
"""


def test_only_the_probe_lines_are_dropped_and_the_rest_keeps_its_order() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().splitlines() == [
        "E0000 00:00:1.4 16411 saved_model.cc:9] a real error", "a Python warning", "after the block"]
