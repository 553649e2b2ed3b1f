"""The access audit: one hash-chained line per request (``privacy.audit``), written off the event loop."""
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from privacy.audit import AuditLog


class AuditSink:
    """Buffers access records on the event loop and appends them in the background."""

    def __init__(self, path: str) -> None:
        self.log = AuditLog(path)
        self._pending: list[Mapping[str, Any]] = []
        self._task: asyncio.TimerHandle | None = None

    def add(self, record: dict[str, Any]) -> None:
        self._pending.append(record)
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.call_later(0.05, self._flush_soon, loop)

    def _flush_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = None
        records, self._pending = self._pending, []
        if records:
            loop.run_in_executor(None, self.log.append_many, records)

    def close(self) -> None:
        records, self._pending = self._pending, []
        if records:
            self.log.append_many(records)
        self.log.close()
