"""The access audit: one hash-chained line per request (``privacy.audit``), in the file before the answer.

The line is appended on the event loop, synchronously, before the request is answered: a process killed
at any moment (SIGKILL, OOM) has an audit line for every request it answered, since a completed
``write(2)`` survives the process. A failed append (a full disk) is counted
(``esteira_audit_write_failures_total``), logged when it starts and when it ends, and, with
``--audit_required``, the request is refused instead of answered without its line.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from privacy.audit import AuditLog, AuditWriteError
from serving.observability.metrics import Registry
from serving.protocol.errors import Code, ServingError

log = logging.getLogger("serving")


class AuditSink:
    """Appends one access record per request; says when it could not."""

    def __init__(self, path: str, *, required: bool = True, metrics: Registry | None = None) -> None:
        self.log = AuditLog(path)
        self.required = required
        self.metrics = metrics
        self.failing = False
        if metrics is not None:
            metrics.audit_writable.set((), 1.0)

    def add(self, record: Mapping[str, Any]) -> ServingError | None:
        """Append ``record``; the refusal to answer with when it could not be written and the audit is required."""
        try:
            self.log.append_many([record])
        except AuditWriteError as error:
            self._failed(error)
            if self.required:
                return ServingError(Code.UNAVAILABLE, "the access audit log cannot be written, so the request is "
                                                      "refused (--audit_required); the operator must free space "
                                                      "on the audit log's disk")
            return None
        if self.failing:
            self.failing = False
            log.warning("access audit log %s is written again", self.log.path)
            if self.metrics is not None:
                self.metrics.audit_writable.set((), 1.0)
        return None

    def _failed(self, error: AuditWriteError) -> None:
        if self.metrics is not None:
            self.metrics.audit_write_failures.inc(())
            self.metrics.audit_writable.set((), 0.0)
        if not self.failing:
            self.failing = True
            log.error("%s; requests are %s until it is written again", error,
                      "refused" if self.required else "answered without their audit line")

    def close(self) -> None:
        self.log.close()
