"""The server-wide inference timeout (``--rest_api_timeout_in_ms``) for many requests at once."""
from __future__ import annotations

import asyncio
from collections import deque


class _Watch:
    __slots__ = ("cancelling", "deadline", "done", "expired", "task")

    def __init__(self, deadline: float, task: asyncio.Task, cancelling: int) -> None:
        self.deadline, self.task, self.cancelling = deadline, task, cancelling
        self.done = self.expired = False


class DeadlineQueue:
    """Cancels requests that outlive the server-wide inference timeout, with one timer for all of them.

    Every request gets the same timeout, so deadlines arrive in order: a deque and one pending timer
    replace the timer handle and context manager per request of ``asyncio.timeout`` (about 5 % of the
    event loop's time per single-row request)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._watches: deque[_Watch] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self) -> _Watch:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a deadline needs a running task")
        watches = self._watches
        while watches and watches[0].done:  # requests mostly finish in order: the deque stays short
            watches.popleft()
        watch = _Watch(loop.time() + self.seconds, task, task.cancelling())
        watches.append(watch)
        if self._timer is None:
            self._timer = loop.call_at(watch.deadline, self._expire, loop)
        return watch

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        watches = self._watches
        while watches and (watches[0].done or watches[0].deadline <= now):
            watch = watches.popleft()
            if not watch.done:
                watch.expired = True
                watch.task.cancel()
        if watches:
            self._timer = loop.call_at(watches[0].deadline, self._expire, loop)
