"""What REST and gRPC share: version routing (canary), timeouts, metrics and the access audit."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from serving.api.auth import Authenticator
from serving.api.deadlines import DeadlineQueue
from serving.backends import Backend, Handle
from serving.canary import CanaryRouter
from serving.observability.audit import AuditSink
from serving.observability.feedback import PredictionMemory, row_classes
from serving.observability.metrics import Registry
from serving.observability.request_log import Build, RequestLog, RequestLogError
from serving.protocol.errors import Code, ServingError

log = logging.getLogger("serving")
T = TypeVar("T")


@dataclass
class Call:
    """What one request did, for metrics and the audit line (never payload values)."""

    entrypoint: str  # REST | GRPC
    api: str  # predict, classify, regress, multi_inference, metadata, status, reload
    caller: str = "anonymous"
    model: str = ""
    version: str = ""
    code: str = "OK"  # the status code's name, as metric labels and the audit line carry it
    request_bytes: int = 0
    response_bytes: int = 0
    started: float = 0.0
    request_id: str = ""
    explains: str = ""  # an explanation's audit line names the request id of the prediction it explains


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
        memory: PredictionMemory | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.router = router or CanaryRouter()
        self.auth = auth
        self.audit = audit
        self.timeout_seconds = timeout_seconds
        self._deadlines = DeadlineQueue(timeout_seconds) if timeout_seconds else None
        self.memory = memory if memory is not None else PredictionMemory(metrics)
        self.request_log = request_log if request_log is not None else RequestLog(metrics)
        metrics.version_labels.set_function(self._label_info)

    def _label_info(self) -> list[tuple[tuple[str, ...], float]]:
        return [((name, str(version), label), 1.0)
                for name in self.backend.model_names() for label, version in self.backend.labels(name).items()]

    async def resolve(self, name: str, version: int | None, label: str | None, client_id: Any = None) -> Handle:
        if not name:
            raise ServingError(Code.INVALID_ARGUMENT, "ModelSpec has no name specified.")
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
                    raise ServingError(Code.DEADLINE_EXCEEDED,
                                       f"Inference did not finish within {limit * 1000:.0f} ms") from None
                raise
            finally:
                watch.done = True
        try:
            async with asyncio.timeout(limit):  # a timer only; wait_for would wrap every request in another Task
                return await work
        except TimeoutError:
            raise ServingError(Code.DEADLINE_EXCEEDED,
                               f"Inference did not finish within {limit * 1000:.0f} ms") from None

    def count_classes(self, model: str, version: int, outputs: Mapping[str, np.ndarray], request_id: str = "",
                      threshold: float | None = None, inputs: Mapping[str, np.ndarray] | None = None,
                      signature: str = "") -> None:
        """Predicted classes (at the model's decision threshold) and scores per row; remembered under the
        request id for the feedback API and, with the inputs, for a review of the decision."""
        rows = row_classes(outputs, threshold)
        if rows is None:
            return
        version_text = str(version)
        self.metrics.prediction_score.observe_many((model, version_text), rows.scores)
        for label, count in enumerate(rows.counts()):
            if count:
                self.metrics.predictions.inc((model, version_text, str(label)), count)
        if request_id:
            self.memory.remember(request_id, model, version, rows, inputs, signature)

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

    def log_request(self, call: Call, signature: str | None, build: Build) -> None:
        """A sampled record of this call in the model's request log (logging_config), when it has one."""
        settings = self.request_log.wants(call.model)
        if settings is not None:
            self.request_log.submit(settings, int(call.version), signature, call.request_id, build)

    async def reload(self, config: Any) -> None:
        """HandleReloadConfigRequest and the polled config file: the backend, then the request log."""
        try:
            settings = self.request_log.parse(config)
        except RequestLogError as exc:
            raise ServingError(Code.INVALID_ARGUMENT, str(exc)) from None
        await self.backend.reload(config)
        self.request_log.apply(settings)

    def finish(self, call: Call) -> ServingError | None:
        """Audit, then count, the call; returns the error to answer with instead when its audit line could
        not be written and the audit is required (the caller must not answer it as it was)."""
        elapsed = time.perf_counter() - call.started
        refusal = None
        if self.audit is not None:
            refusal = self.audit.add({
                "caller": call.caller, "entrypoint": call.entrypoint, "api": call.api, "model": call.model,
                "version": call.version, "status": call.code, "latency_ms": round(elapsed * 1000, 3),
                "request_bytes": call.request_bytes,
                **({"request_id": call.request_id} if call.request_id else {}),
                **({"explains_request_id": call.explains} if call.explains else {}),
            })
            if refusal is not None:
                call.code = refusal.code_name
        m = self.metrics
        m.requests.inc((call.model, call.version, call.api, call.entrypoint, call.code))
        if call.code == "OK":
            m.duration.observe((call.model, call.version, call.api, call.entrypoint), elapsed)
        if call.api in ("predict", "classify", "regress", "multi_inference"):
            m.request_size.observe((call.model, call.api, call.entrypoint), call.request_bytes)
            m.response_size.observe((call.model, call.api, call.entrypoint), call.response_bytes)
        return refusal

    def close(self) -> None:
        self.request_log.close()
        if self.audit is not None:
            self.audit.close()
        self.backend.close()
