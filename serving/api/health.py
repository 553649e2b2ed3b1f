"""gRPC health checking (``grpc.health.v1.Health``, Check and Watch) tied to model availability.

Services: ``""`` (the whole server: SERVING while every model has an AVAILABLE version, as ``/readyz``),
one per model name (SERVING while a version of it is AVAILABLE), and TF Serving's ``ModelService`` and
``PredictionService`` (SERVING while the server runs, as TF Serving sets them with
``--enable_grpc_healthcheck_service``). All turn NOT_SERVING when the server stops.

States follow the backend's status API: refreshed at once when the model manager reports a load or
unload (``changed``), and every second anyway (a gateway's remote models change without telling us).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import get_model_status_pb2

from serving.backends import Backend
from serving.protocol.errors import ServingError

log = logging.getLogger("serving")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
OVERALL = ""
TF_SERVING_SERVICES = ("ModelService", "PredictionService")
REFRESH_SECONDS = 1.0
STATUS_TIMEOUT_SECONDS = 5.0  # a gateway's status call to the server behind
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE


class HealthServicer(health.aio.HealthServicer):
    """grpcio-health-checking's asyncio servicer with two fixes to Watch: the library forgets a service's
    watchers when any one of them leaves (the others then miss every later change), and its streams never
    end, so a stopping server would wait out its grace for each; here a service's watchers are counted,
    and every stream ends once it has sent NOT_SERVING at shutdown."""

    def __init__(self) -> None:
        super().__init__()
        self._watching: collections.Counter[str] = collections.Counter()

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        service = request.service
        condition = self._server_watchers[service]
        self._watching[service] += 1
        try:
            last = None
            async with condition:
                while True:
                    status = self._server_status.get(service, SERVICE_UNKNOWN)
                    if status != last:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                        last = status
                    if self._gracefully_shutting_down:
                        return
                    await condition.wait()
        finally:
            self._watching[service] -= 1
            if self._watching[service] <= 0:
                del self._watching[service]
                self._server_watchers.pop(service, None)

    async def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for every service, and every open Watch (of a known service or not) told to end."""
        await super().enter_graceful_shutdown()
        for condition in list(self._server_watchers.values()):
            async with condition:
                condition.notify_all()


class ModelHealth:
    """Keeps the health servicer's states equal to what the backend says about each model."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.servicer = HealthServicer()
        self._known: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def add_to(self, server: Any) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        for name in TF_SERVING_SERVICES:
            await self.servicer.set(name, SERVING)
        await self.refresh()
        self._task = self._loop.create_task(self._follow())

    def changed(self) -> None:
        """Called from any thread (the model manager's poller) when a version loaded or unloaded."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def _follow(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):  # a timeout is the periodic refresh
                await asyncio.wait_for(self._wake.wait(), REFRESH_SECONDS)
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:
                log.exception("health refresh failed; retrying in %.0f s", REFRESH_SECONDS)

    async def refresh(self) -> None:
        names = set(self.backend.model_names())
        available = {name: await self._available(name) for name in sorted(names)}
        for name in sorted(self._known - names):  # removed by a config reload
            await self.servicer.set(name, NOT_SERVING)
        for name, up in available.items():
            await self.servicer.set(name, SERVING if up else NOT_SERVING)
        self._known |= names
        await self.servicer.set(OVERALL, SERVING if all(available.values()) else NOT_SERVING)

    async def _available(self, name: str) -> bool:
        try:
            async with asyncio.timeout(STATUS_TIMEOUT_SECONDS):
                status = await self.backend.status(name, None)
        except (ServingError, TimeoutError):
            return False  # unknown to the backend, or (gateway) the server behind is unreachable or slow
        return any(entry.state == _AVAILABLE for entry in status.model_version_status)

    async def stop(self) -> None:
        """NOT_SERVING everywhere before the ports close, so watchers and balancers stop sending first."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.servicer.enter_graceful_shutdown()
