"""One line per component as it starts and as it ends, from the records TFX's own runners log.

LocalDagRunner logs 'Component %s is running.' / 'is finished.' around each launch and BeamDagRunner
'node %s is running.' / 'is finished.'; between the two, TFX's launcher logs whether the execution was
cached, ran and succeeded, or failed. The records arrive synchronously on the thread that runs the
component, so a handler on TFX's logger sees each start and end as it happens (polling MLMD from a thread
sees an execution only once the launcher has registered it, and a cached one only after it is published).
The format strings below are TFX 1.21's; the e2e test checks every component's line against MLMD.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from absl import logging as absl_logging

_STARTS = frozenset({"Component %s is running.", "node %s is running."})
_ENDS = frozenset({"Component %s is finished.", "node %s is finished."})
_SKIPS = frozenset({"Skipping component %s.", "Node %s is skipped in this partial run."})
_OUTCOMES = {
    "A cached execution %d is used.": "cached",
    "Execution %d succeeded.": "complete",
    "Execution %d failed.": "failed",
    "Skipping execution for %s": "not run (its inputs are missing)",
}


class ComponentProgress(logging.Handler):
    """Prints `esteira: [i/n] <component> started|<state> in <s> (total <s>)` lines to ``out``."""

    def __init__(self, out: TextIO, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logging.INFO)
        self._out, self._total, self._clock = out, total, clock
        self._began = clock()
        self._index: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._outcome: dict[str, str] = {}
        self._on_thread: dict[int, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.msg if isinstance(record.msg, str) else ""
        if message in _OUTCOMES:
            node = self._on_thread.get(record.thread or 0)
            if node is not None:
                self._outcome[node] = _OUTCOMES[message]
            return
        if not isinstance(record.args, tuple) or not record.args:
            return
        node = str(record.args[0])
        if message in _STARTS:
            self._index[node] = len(self._index) + 1
            self._started[node] = self._clock()
            self._on_thread[record.thread or 0] = node
            self._line(node, "started")
        elif message in _ENDS and node in self._started:
            # Resolvers and importers log no execution outcome: finishing is their success.
            self._finish(node, self._outcome.get(node, "complete"))
        elif message in _SKIPS:
            self._write(f"esteira: [ -/{self._total}] {node} skipped (not part of this partial run)")

    def fail_running(self, state: str = "failed") -> None:
        """The run raised: every component that started and never finished ends with ``state``."""
        for node in list(self._started):
            self._finish(node, state)

    def _finish(self, node: str, state: str) -> None:
        took = self._clock() - self._started.pop(node)
        self._line(node, f"{state} in {took:.1f} s")

    def _line(self, node: str, what: str) -> None:
        width = len(str(self._total))
        self._write(f"esteira: [{self._index[node]:>{width}}/{self._total}] {node} {what} "
                    f"(total {self._clock() - self._began:.0f} s)")

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()


@contextmanager
def component_progress(out: TextIO, total: int) -> Iterator[ComponentProgress]:
    """Print progress lines for the block's TFX run; on an exception, close the running ones as failed."""
    handler = ComponentProgress(out, total)
    logger = absl_logging.get_absl_logger()
    verbosity = absl_logging.get_verbosity()
    # TFX's INFO records must be created for the handler to see them; absl's setting, not the logger's level,
    # because TensorFlow restores absl's setting after each SavedModel export.
    absl_logging.set_verbosity(absl_logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    except KeyboardInterrupt:
        handler.fail_running("interrupted")
        raise
    except BaseException:
        handler.fail_running()
        raise
    finally:
        logger.removeHandler(handler)
        absl_logging.set_verbosity(verbosity)

