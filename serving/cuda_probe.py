"""TensorFlow's CUDA probe lines on a CPU-only machine, kept off the terminal without hiding real errors.

When TensorFlow loads and first touches its devices it prints ``cudart_stub.cc ... Could not find cuda
drivers`` and ``failed call to cuInit ... (303)`` straight to file descriptor 2, the second at ERROR:
TF_CPP_MIN_LOG_LEVEL=3 would hide every real C++ error with it, and CUDA_VISIBLE_DEVICES does not stop
the probe (TF 2.21). So for the length of TensorFlow's start, descriptor 2 goes through a pipe and only
the probe's own lines are dropped; everything else reaches the terminal unchanged, in order.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

PROBE_LINE = re.compile(rb"cudart_stub\.cc:\d+\] Could not find cuda drivers|cuda_platform\.cc:\d+\] failed call to "
                        rb"cuInit|cuda_executor\.cc:\d+\] .*(?:NUMA|cuInit)|^WARNING: All log messages before "
                        rb"absl::InitializeLog\(\) is called are written to STDERR\s*$")


def _copy_without_probe(source: int, sink: int) -> None:
    with os.fdopen(source, "rb", buffering=0) as lines:
        pending = b""
        while chunk := lines.read(65536):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                if not PROBE_LINE.search(line):
                    os.write(sink, line + b"\n")
        if pending and not PROBE_LINE.search(pending):
            os.write(sink, pending)


@contextlib.contextmanager
def cuda_probe_filtered() -> Iterator[None]:
    """Drop the CUDA probe's lines from descriptor 2 inside the block (TensorFlow's import and first load)."""
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    copier = threading.Thread(target=_copy_without_probe, args=(read_end, terminal), daemon=True,
                              name="cuda-probe-filter")
    copier.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)  # closes the pipe's last write end: the copier drains it and stops
        copier.join(timeout=5)
        if not copier.is_alive():  # a child started in the block may still hold the pipe: leave its copier be
            os.close(terminal)
