"""Dynamic batching on the event loop, with TF Serving's BatchingParameters semantics.

One queue per (model version, signature, non-batch input shapes); all queues share
``num_batch_threads`` execution slots served round-robin. A batch runs when it is full, when its
oldest task has waited ``batch_timeout_micros``, or at once when a slot is free and the timeout is 0
(so batches grow exactly as fast as the model is busy). A full queue answers UNAVAILABLE at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.config import BatchingParameters
from serving.observability.metrics import Registry
from serving.protocol.errors import Code, ServingError, invalid_argument
from serving.protocol.tensors import StackedInputs

RunFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclass
class _Task:
    inputs: Mapping[str, np.ndarray]
    size: int
    future: asyncio.Future
    enqueued: float


@dataclass
class _Queue:
    run: RunFn
    open: list[_Task] = field(default_factory=list)
    open_size: int = 0
    open_since: float = 0.0
    closed: deque = field(default_factory=deque)

    def close_open(self) -> None:
        if self.open:
            self.closed.append(self.open)
            self.open, self.open_size = [], 0


def task_size(inputs: Mapping[str, np.ndarray]) -> int | None:
    """The 0th dimension all inputs share; None when an input is a scalar (cannot be batched)."""
    if type(inputs) is StackedInputs:
        return inputs.matrix.shape[1] if inputs.matrix.ndim >= 2 else None
    sizes = set()
    for array in inputs.values():
        if array.ndim == 0:
            return None
        sizes.add(array.shape[0])
    if len(sizes) > 1:
        raise invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop() if sizes else None


class Batcher:
    def __init__(self, params: BatchingParameters, executor: Executor, metrics: Registry) -> None:
        self.params = params
        self.executor = executor
        self.metrics = metrics
        self._queues: dict[Hashable, _Queue] = {}
        self._order: deque[Hashable] = deque()
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._kick_pending = False

    async def submit(self, key: Hashable, run: RunFn, inputs: Mapping[str, np.ndarray],
                     same_shapes: bool = False) -> Mapping[str, np.ndarray]:
        """``same_shapes``: the caller guarantees every task under ``key`` has the same aliases, dtypes and
        non-batch shapes (checked against a fully known signature), so the queue key needs no per-input part."""
        loop = asyncio.get_running_loop()
        size = task_size(inputs)
        params = self.params
        if size is None or (size > params.max_batch_size and params.enable_large_batch_splitting):
            return await loop.run_in_executor(self.executor, run, inputs)
        if size > params.max_batch_size:
            raise invalid_argument(f"Task size {size} is larger than maximum input batch size {params.max_batch_size}")
        if same_shapes:
            full_key: tuple[Hashable, Any] = (key, None)
        else:
            full_key = (key, tuple((alias, array.shape[1:], array.dtype.str)
                                  for alias, array in sorted(inputs.items())))
        queue = self._queues.get(full_key)
        if queue is None:
            queue = self._queues[full_key] = _Queue(run)
            self._order.append(full_key)
        queue.run = run
        if queue.open and queue.open_size + size > params.max_batch_size:
            queue.close_open()
        if not queue.open and len(queue.closed) >= params.max_enqueued_batches:
            raise ServingError(Code.UNAVAILABLE, "The batch scheduling queue to which this task was submitted is full")
        now = time.perf_counter()
        task = _Task(inputs, size, loop.create_future(), now)
        if not queue.open:
            queue.open_since = now
        queue.open.append(task)
        queue.open_size += size
        if queue.open_size >= params.max_batch_size:
            queue.close_open()
        if not self._kick_pending:
            # Scheduling runs after the callbacks already ready in this event-loop pass: requests that
            # arrived together (read in the same pass) join one batch instead of one batch each. No timer,
            # no waiting beyond the pass; batch_timeout_micros keeps its meaning on top of this.
            self._kick_pending = True
            loop.call_soon(self._deferred_kick, loop)
        return await task.future

    def _deferred_kick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._kick_pending = False
        self._kick(loop)

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        timeout = self.params.batch_timeout_micros / 1e6
        next_deadline = None
        scanned = 0
        while self._running < self.params.num_batch_threads and scanned < len(self._order):
            key = self._order[0]
            self._order.rotate(-1)
            queue = self._queues[key]
            batch = None
            if queue.closed:
                batch = queue.closed.popleft()
            elif queue.open:
                due = queue.open_since + timeout
                if time.perf_counter() >= due:
                    batch = queue.open
                    queue.open, queue.open_size = [], 0
                else:
                    next_deadline = due if next_deadline is None else min(next_deadline, due)
            if batch is None:
                scanned += 1
                continue
            scanned = 0
            self._running += 1
            self._execute(queue.run, batch, loop)
        if next_deadline is not None and self._timer is None:
            delay = max(next_deadline - time.perf_counter(), 0)
            self._timer = loop.call_later(delay, self._on_timer, loop)
        if not any(q.open or q.closed for q in self._queues.values()):
            self._prune()

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._kick(loop)

    def _prune(self) -> None:
        if len(self._queues) > 256:  # forget idle queues of unloaded versions
            self._queues.clear()
            self._order.clear()

    def _execute(self, run: RunFn, batch: list[_Task], loop: asyncio.AbstractEventLoop) -> None:
        """Hand the batch to a batch thread; its completion comes back as one loop callback (no Task per batch)."""
        started = time.perf_counter()
        observe = self.metrics.queuing_latency.observe
        pool = (self.params.thread_pool_name,)
        for task in batch:
            observe(pool, (started - task.enqueued) * 1e6)
        total = sum(task.size for task in batch)
        try:
            done = self.executor.submit(self._run_batch, run, batch, total)
        except BaseException as exc:  # noqa: BLE001 - e.g. the executor was shut down
            self._complete(batch, None, exc, loop)
            return

        def back(future: Any) -> None:  # in the batch thread
            exc = ServingError(Code.CANCELLED, "cancelled") if future.cancelled() else future.exception()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(self._complete, batch, None if exc else future.result(), exc, loop)

        done.add_done_callback(back)

    def _complete(self, batch: list[_Task], outputs: Mapping[str, np.ndarray] | None, exc: BaseException | None,
                  loop: asyncio.AbstractEventLoop) -> None:
        try:
            if exc is None and outputs is not None:
                self.metrics.wrapped_run_count.inc()
                observe = self.metrics.input_batch_size.observe
                offset = 0
                for task in batch:
                    observe((), task.size)
                    if not task.future.done():
                        task.future.set_result({a: v[offset: offset + task.size] for a, v in outputs.items()})
                    offset += task.size
            else:
                error = exc if isinstance(exc, Exception) else ServingError(Code.CANCELLED, "cancelled")
                for task in batch:
                    if not task.future.done():
                        task.future.set_exception(error)
        finally:
            self._running -= 1
            self._kick(loop)

    def _run_batch(self, run: RunFn, batch: list[_Task], total: int) -> Mapping[str, np.ndarray]:
        padded = self._padded_size(total)
        first = batch[0].inputs
        if len(batch) == 1 and padded == total:
            inputs = first
        elif type(first) is StackedInputs and all(
                type(task.inputs) is StackedInputs and task.inputs.aliases == first.aliases for task in batch):
            parts = [task.inputs.matrix for task in batch]  # type: ignore[attr-defined]
            if padded > total:
                parts.append(np.repeat(parts[-1][:, :1], padded - total, axis=1))
            inputs = StackedInputs(np.concatenate(parts, axis=1), first.aliases)
        else:
            inputs = {}
            for alias in batch[0].inputs:
                parts = [task.inputs[alias] for task in batch]
                if padded > total:
                    last_row = batch[-1].inputs[alias][:1]
                    parts.append(np.repeat(last_row, padded - total, axis=0))
                inputs[alias] = np.concatenate(parts, axis=0)
        self.metrics.processed_batch_size.observe((), padded)
        self.metrics.padding_size.observe((str(padded),), padded - total)
        outputs = run(inputs)
        for alias, value in outputs.items():
            if np.ndim(value) == 0 or value.shape[0] != padded:
                raise ServingError(
                    Code.FAILED_PRECONDITION,
                    f"Batched output tensor '{alias}' has 0th dimension {np.shape(value)[:1]}, expected {padded}; "
                    "this signature cannot be batched, serve it without --enable_batching",
                )
        return outputs

    def _padded_size(self, total: int) -> int:
        for allowed in self.params.allowed_batch_sizes:
            if allowed >= total:
                return allowed
        return total
