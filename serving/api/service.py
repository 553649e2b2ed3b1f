"""What REST and gRPC share: version routing (canary), timeouts, metrics and the access audit."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Mapping, TypeVar

import numpy as np

from serving.api.auth import Authenticator
from serving.api.deadlines import DeadlineQueue
from serving.models.backends import Backend, Handle
from serving.canary import CanaryRouter
from serving.protocol.errors import ServingError
from serving.observability.audit import AuditSink
from serving.observability.metrics import Registry

log = logging.getLogger("serving")
T = TypeVar("T")
MAX_CLASSES = 64  # bound on the class label set of esteira_predictions_total


@dataclass
class Call:
    """What one request did, for metrics and the audit line (never payload values)."""

    entrypoint: str  # REST | GRPC
    api: str  # predict, classify, regress, multi_inference, metadata, status, reload
    caller: str = "anonymous"
    model: str = ""
    version: str = ""
    code: str = "OK"
    request_bytes: int = 0
    response_bytes: int = 0
    started: float = 0.0


class Service:
    def __init__(
        self,
        backend: Backend,
        metrics: Registry,
        *,
        router: CanaryRouter | None = None,
        auth: Authenticator | None = None,
        audit: AuditSink | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.router = router or CanaryRouter()
        self.auth = auth
        self.audit = audit
        self.timeout_seconds = timeout_seconds
        self._deadlines = DeadlineQueue(timeout_seconds) if timeout_seconds else None

    async def resolve(self, name: str, version: int | None, label: str | None, client_id: Any = None) -> Handle:
        if not name:
            raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
        if version is None and label is None and name in self.router.splits:
            chosen = self.router.route(name, set(self.backend.labels(name)), client_id)
            if chosen is not None:
                self.metrics.canary_routed.inc((name, chosen))
                label = chosen
        return await self.backend.resolve(name, version, label)

    async def bounded(self, work: Awaitable[T], timeout: float | None = None) -> T:
        """TF Serving bounds the session run; here the wait is bounded and the request answers 504."""
        limit = timeout if timeout is not None else self.timeout_seconds
        if not limit:
            return await work
        if limit == self.timeout_seconds and self._deadlines is not None:
            watch = self._deadlines.watch()
            try:
                return await work
            except asyncio.CancelledError:
                if watch.expired and watch.task.uncancel() <= watch.cancelling:
                    raise ServingError("DEADLINE_EXCEEDED", f"Inference did not finish within {limit * 1000:.0f} ms") from None
                raise
            finally:
                watch.done = True
        try:
            async with asyncio.timeout(limit):  # a timer only; wait_for would wrap every request in another Task
                return await work
        except asyncio.TimeoutError:
            raise ServingError("DEADLINE_EXCEEDED", f"Inference did not finish within {limit * 1000:.0f} ms") from None

    def count_classes(self, model: str, version: int, outputs: Mapping[str, np.ndarray]) -> None:
        if len(outputs) != 1:
            return
        values = next(iter(outputs.values()))
        if values.dtype.kind != "f" or values.ndim == 0 or values.ndim > 2:
            return
        if values.ndim == 1 or values.shape[1] == 1:
            if values.size <= 16:  # a few rows (most requests): plain floats beat three numpy calls
                positives = sum(1 for value in values.ravel().tolist() if value >= 0.5)
            else:
                positives = int(np.count_nonzero(values.reshape(-1) >= 0.5))
            counts = {"1": positives, "0": values.shape[0] - positives}
        else:
            if values.shape[1] > MAX_CLASSES:
                return
            found = np.bincount(values.argmax(axis=1), minlength=values.shape[1])
            counts = {str(i): int(c) for i, c in enumerate(found)}
        for label, count in counts.items():
            if count:
                self.metrics.predictions.inc((model, str(version), label), count)

    def count_classifications(self, model: str, version: int, results: list) -> None:
        seen = 0
        for classes in results:
            if not classes:
                continue
            label, _score = max(classes, key=lambda item: item[1])
            text = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            self.metrics.predictions.inc((model, str(version), text[:32] or "<unnamed>"))
            seen += 1
            if seen > 10_000:
                break

    def finish(self, call: Call) -> None:
        elapsed = time.perf_counter() - call.started
        m = self.metrics
        m.requests.inc((call.model, call.version, call.api, call.entrypoint, call.code))
        if call.code == "OK":
            m.duration.observe((call.model, call.version, call.api, call.entrypoint), elapsed)
        if call.api in ("predict", "classify", "regress", "multi_inference"):
            m.request_size.observe((call.model, call.api, call.entrypoint), call.request_bytes)
            m.response_size.observe((call.model, call.api, call.entrypoint), call.response_bytes)
        if self.audit is not None:
            self.audit.add({
                "caller": call.caller, "entrypoint": call.entrypoint, "api": call.api, "model": call.model,
                "version": call.version, "status": call.code, "latency_ms": round(elapsed * 1000, 3),
                "request_bytes": call.request_bytes,
            })

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
        self.backend.close()
