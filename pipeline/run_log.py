"""Where a run's output goes: every TFX, Beam and TensorFlow line to one log file, the terminal keeps progress.

TensorFlow's C++ logging, Beam's workers and the servers a component starts write straight to file
descriptors 1 and 2, so the file descriptors themselves are pointed at the log for the length of the run;
Python's logging joins them at INFO so the file holds what TFX's own runners would print.

The CUDA probe lines a CPU-only machine prints when TensorFlow loads (`cudart_stub.cc ... Could not find
cuda drivers`, `failed call to cuInit ... (303)`) cannot be silenced at their source without hiding real
errors: the first is written before TensorFlow's C++ logging is initialised, so TF_CPP_MIN_LOG_LEVEL does
not reach it; the second is logged at ERROR, which only TF_CPP_MIN_LOG_LEVEL=3 would drop (and every real
C++ error with it); CUDA_VISIBLE_DEVICES="" or -1 does not stop the probe (checked on TF 2.21). So they
go to the log with everything else and never reach the terminal during a run.
"""
from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from absl import logging as absl_logging

_FORMAT = "%(asctime)s %(levelname).1s %(name)s %(filename)s:%(lineno)d] %(message)s"


def logs_folder(pipeline_root: Path) -> Path:
    """outputs/<use case>/logs, beside the pipeline root (as reports/ and gate/ are)."""
    return pipeline_root.parent / "logs"


def started_log(pipeline_root: Path, started: datetime.datetime) -> Path:
    """The log's name while the run goes: TFX names its run only once the run has begun."""
    return logs_folder(pipeline_root) / f"started-{started.isoformat(timespec='seconds')}.log"


def name_after_run(log: Path, run_id: str | None, started: datetime.datetime) -> Path:
    """Rename the log to `<run id>.log` when MLMD's latest run is this one (TFX's run id is the ISO time
    the run began), else keep the started-<time> name: the run failed before TFX recorded it."""
    if run_id is None or not log.exists():
        return log
    try:
        began = datetime.datetime.fromisoformat(run_id)
    except ValueError:
        return log
    if began < started:
        return log  # an earlier run: this one recorded nothing
    target = log.with_name(f"{run_id}.log")
    log.replace(target)
    return target


@contextmanager
def output_to(log: Path) -> Iterator[TextIO]:
    """Point file descriptors 1 and 2 and Python's logging (INFO and up) at ``log`` for the block; yield a
    line-buffered stream on the terminal's stdout for the lines the user should see while the run goes."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    # Append mode: Python's writes and the C++ writes on the duplicated descriptors interleave, never overwrite.
    sink = open(log, "a", buffering=1)  # noqa: SIM115 (closed in finally, after the descriptors return)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    levels = root.level, absl_logging.get_verbosity()
    os.dup2(sink.fileno(), 1)
    os.dup2(sink.fileno(), 2)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Through absl's own setting: TensorFlow saves and restores it around SavedModel exports, so a level set
    # on the logger alone would fall back to WARNING at the first export.
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        root.removeHandler(handler)
        root.setLevel(levels[0])
        absl_logging.set_verbosity(levels[1])
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in saved:
            os.close(descriptor)
        terminal.close()
        sink.close()
