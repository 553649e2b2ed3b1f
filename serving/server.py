"""The model server: wires flags to the model manager (or remote backend), REST (uvicorn) and gRPC
(grpc.aio), both on one event loop in one process."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from privacy.audit import writer_path
from serving.api.asgi import Limits
from serving.api.auth import Authenticator
from serving.api.grpc_server import GrpcBounds, create_grpc_server, listen
from serving.api.grpc_service import add_services
from serving.api.health import ModelHealth
from serving.api.http_server import GRACE_SECONDS, RestServer
from serving.api.rest import RestApi
from serving.api.service import Service
from serving.api.tls import POLL_SECONDS as TLS_POLL_SECONDS
from serving.api.tls import ServerTls
from serving.backends import Backend
from serving.canary import CanaryRouter
from serving.config import (
    read_batching_parameters,
    read_model_config,
    read_monitoring_config,
    single_model_config,
)
from serving.flags import ServerFlags
from serving.observability.audit import AuditSink
from serving.observability.feedback import PredictionMemory
from serving.observability.metrics import Registry
from serving.observability.request_log import RequestLog
from serving.protocol.json_codec import write_error
from serving.workers import LIMITS, is_worker, worker_metrics_directory

log = logging.getLogger("serving")


class ModelServer:
    """Build from flags, ``await start()``, ``await stop()``. Ports 0 in flags mean "disabled" as in TF Serving;
    use :func:`pick_free_port` for tests."""

    def __init__(self, flags: ServerFlags) -> None:
        self.flags = flags
        self.metrics = Registry()
        self.grpc_server: grpc.aio.Server | None = None
        self.http: RestServer | None = None
        self.grpc_port = 0
        self.rest_port = 0
        self._config_task: asyncio.Task | None = None
        self.service: Service | None = None
        self.health: ModelHealth | None = None
        self.tls: ServerTls | None = None
        self._tls_task: asyncio.Task | None = None
        # a worker of --server_processes: its index; ports shared, metrics summed over all workers
        self.worker: int | None = flags.server_worker_index if is_worker(flags) else None

    def _model_config(self):  # type: ignore[no-untyped-def]
        if self.flags.model_config_file:
            return read_model_config(self.flags.model_config_file)
        return single_model_config(self.flags.model_name, self.flags.model_base_path)

    def build(self) -> Service:
        """Everything that can fail on bad configuration, before any port opens."""
        flags = self.flags
        if self.worker is not None and self.metrics.shared is None:
            self.metrics.share(worker_metrics_directory())
            log.info("worker %d of %d (pid %d); %s", self.worker, flags.server_processes, os.getpid(), LIMITS)
        monitoring = read_monitoring_config(flags.monitoring_config_file)
        self.metrics_path = monitoring.path if monitoring.enable else None
        batching = read_batching_parameters(flags.batching_parameters_file) if flags.enable_batching else None
        if flags.ssl_config_file and self.tls is None:
            self.tls = ServerTls(flags.ssl_config_file)
        router = CanaryRouter.from_file(flags.canary_config_file)
        memory = PredictionMemory(self.metrics, flags.feedback_max_entries, flags.feedback_ttl_seconds,
                                  max_bytes=flags.feedback_max_bytes)
        if self.worker is not None:
            memory.unknown_note = (f" by this server process (worker {self.worker} of --server_processes="
                                   f"{flags.server_processes}: each remembers only the predictions it answered, "
                                   "and this call may have reached another than the prediction did)")
        auth = Authenticator.load(flags.auth_token_file or None, protect_probes=flags.auth_protect_probes,
                                  protect_metrics=flags.auth_protect_metrics)
        tags = tuple(t.strip() for t in flags.saved_model_tags.split(",") if t.strip())
        request_log = RequestLog(self.metrics, max_file_bytes=flags.request_log_max_file_bytes,
                                 max_files=flags.request_log_max_files, saved_model_tags=tags,
                                 worker="" if self.worker is None else f"w{self.worker}")
        if flags.model_config_file:  # checked before any model loads; off unless a model asks
            request_log.configure(read_model_config(flags.model_config_file))
        backend: Backend
        if flags.remote_backend:
            from serving.backends.remote import RemoteBackend, RemoteTls

            remote_tls = RemoteTls.from_flags(flags.remote_backend_ca_file, flags.remote_backend_cert_file,
                                              flags.remote_backend_key_file)
            backend = RemoteBackend(flags.remote_backend, metrics=self.metrics,
                                    model_config_file=flags.model_config_file or None, tls=remote_tls)
        else:
            from serving.backends.local import LocalBackend
            from serving.core.manager import ModelManager

            manager = ModelManager(
                self._model_config(), metrics=self.metrics,
                poll_seconds=flags.file_system_poll_wait_seconds,
                allow_labels_for_unavailable=flags.allow_version_labels_for_unavailable_models,
                enable_warmup=flags.enable_model_warmup,
                warmup_iterations=flags.num_request_iterations_for_warmup,
                tags=tags,
                prefer_tflite_model=flags.prefer_tflite_model,
                on_change=self._models_changed,
            )
            manager.start()
            backend = LocalBackend(manager, batching=batching, threads=flags.inference_threads or None)
        audit_path = (flags.audit_log_file if self.worker is None
                      else writer_path(flags.audit_log_file, self.worker))
        audit = (AuditSink(audit_path, required=flags.audit_required, metrics=self.metrics)
                 if flags.audit_log_file else None)
        timeout = flags.rest_api_timeout_in_ms / 1000 if flags.rest_api_timeout_in_ms > 0 else None
        self.service = Service(backend, self.metrics, router=router, auth=auth, audit=audit, timeout_seconds=timeout,
                               memory=memory, request_log=request_log)
        return self.service

    def _models_changed(self) -> None:
        """The manager loaded or unloaded a version (on its poller thread): the health states follow at once."""
        if self.health is not None:
            self.health.changed()

    async def start(self) -> None:
        service = self.service or self.build()
        flags = self.flags
        shared = self.worker is not None
        if flags.port or flags.grpc_socket_path:
            self.grpc_server = create_grpc_server(flags.grpc_channel_arguments, GrpcBounds(
                max_receive_message_bytes=flags.grpc_max_receive_message_bytes,
                max_concurrent_streams=flags.grpc_max_concurrent_streams,
                max_call_seconds=flags.grpc_max_call_seconds), reuse_port=shared)
            add_services(self.grpc_server, service, flags.enable_serialization_as_tensor_content)
            if flags.enable_grpc_healthcheck_service:
                self.health = ModelHealth(service.backend)
                self.health.add_to(self.grpc_server)
                await self.health.start()
            self.grpc_port = listen(self.grpc_server, flags.host, flags.port, flags.grpc_socket_path,
                                    self.tls.grpc_credentials if self.tls is not None else None)
            await self.grpc_server.start()
            if flags.port:
                log.info("Running gRPC ModelServer at %s:%d ...", flags.host, self.grpc_port)
            if flags.grpc_socket_path:
                log.info("Running gRPC ModelServer at UNIX socket %s ...", flags.grpc_socket_path)
        if flags.rest_api_port:
            if flags.rest_api_port == flags.port:
                log.error("--rest_api_port is the same as --port; REST is not started")
            else:
                api = RestApi(service, metrics_path=self.metrics_path, cors=flags.rest_api_enable_cors_support)
                limits = Limits(max_body_bytes=flags.rest_api_max_body_bytes,
                                request_timeout=flags.request_read_timeout_seconds,
                                keepalive_timeout=flags.rest_api_idle_timeout_seconds,
                                max_connections=flags.rest_api_max_connections,
                                max_header_bytes=flags.rest_api_max_header_bytes,
                                max_headers=flags.rest_api_max_headers,
                                max_pipelined=flags.rest_api_max_pipelined_requests)
                self.http = RestServer(api, flags.host, flags.rest_api_port, limits, write_error,
                                       tls=self.tls.uvicorn_settings() if self.tls is not None else None,
                                       reuse_port=shared)
                self.rest_port = await self.http.start()
                log.info("Exporting HTTP/REST API at:%s:%d ...", flags.host, self.rest_port)
        if self.tls is not None:
            self._tls_task = asyncio.get_running_loop().create_task(self._poll_tls(self.tls))
        if flags.model_config_file and flags.model_config_file_poll_wait_seconds > 0 and not flags.remote_backend:
            self._config_task = asyncio.get_running_loop().create_task(self._poll_config())
        if self.metrics.shared is not None:
            self.metrics.shared.start()

    async def _poll_config(self) -> None:
        """Re-read the config file periodically; a file that fails to apply is logged and counted once (until it
        changes again) and the previous config keeps serving."""
        last = refused = None
        while True:
            await asyncio.sleep(self.flags.model_config_file_poll_wait_seconds)
            try:
                text = await asyncio.to_thread(_read, self.flags.model_config_file)
            except OSError as exc:
                text = f"<unreadable: {exc}>"
            if text in (last, refused):
                continue
            try:
                if text.startswith("<unreadable: "):
                    raise OSError(text[1:-1])
                config = read_model_config(self.flags.model_config_file)
                await self.service.reload(config)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - keep serving with the previous config
                refused = text
                self.metrics.config_reloads.inc(("error",))
                log.error("model config reload failed, keeping the previous config: %s", exc)
                continue
            last, refused = text, None
            self.metrics.config_reloads.inc(("ok",))
            log.info("model config %s reloaded", self.flags.model_config_file)

    @staticmethod
    async def _poll_tls(tls: ServerTls) -> None:
        """New certificates for new connections as soon as --ssl_config_file changes; open ones keep theirs."""
        while True:
            await asyncio.sleep(TLS_POLL_SECONDS)
            try:
                await asyncio.to_thread(tls.reload_if_changed)
            except Exception:  # keep serving with the certificates in use
                log.exception("TLS certificate reload failed; keeping the certificates in use")

    async def stop(self) -> None:
        if self._config_task is not None:
            self._config_task.cancel()
        if self._tls_task is not None:
            self._tls_task.cancel()
        if self.health is not None:
            await self.health.stop()
        draining = [self.http.stop()] if self.http is not None else []
        if self.grpc_server is not None:
            draining.append(self.grpc_server.stop(grace=GRACE_SECONDS))
        await asyncio.gather(*draining)  # both APIs finish their calls in flight at the same time
        if self.flags.grpc_socket_path and os.path.exists(self.flags.grpc_socket_path):
            os.unlink(self.flags.grpc_socket_path)
        if self.service is not None:
            await asyncio.to_thread(self.service.close)
        if self.tls is not None:
            self.tls.close()
        if self.metrics.shared is not None:
            self.metrics.shared.stop()  # the last calls answered count in the sum
            self.metrics.shared = None


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def pick_free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def freeze_startup_objects() -> int:
    """Put everything alive once the server is built (TensorFlow's modules, the first loaded models) out of
    the cycle collector's reach, and return how many objects that is.

    A full collection walks every tracked object: about a million with TensorFlow imported, 280 ms with
    the GIL held, during which every request in flight waited (p99 250-300 ms at 32 concurrent clients).
    Frozen, a full collection takes about 1 ms. Versions loaded later stay collectable, so unloading one
    still frees it."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop: the loop uvicorn would pick (``loop="uvloop"``); REST and gRPC share it."""
    import uvloop

    return uvloop.new_event_loop()



def serve_until_signalled(server: ModelServer, on_started: Callable[[], None] | None = None) -> None:
    """Run a built server on a new event loop until SIGINT or SIGTERM, then stop it gracefully. A port
    that cannot be opened raises OSError, after what had started is stopped. ``on_started`` is called
    once both APIs listen (a worker tells its parent)."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    async def run() -> None:
        try:
            await server.start()
        except OSError:
            await server.stop()
            raise
        if on_started is not None:
            on_started()
        await stop.wait()
        await server.stop()

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()

@dataclass
class RunningServer:
    """A server running on its own event-loop thread (tests, benchmarks, notebooks)."""

    server: ModelServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.server.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.server.grpc_port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(flags: ServerFlags) -> RunningServer:
    server = ModelServer(flags)
    server.build()
    loop = new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            try:
                await server.start()
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)
            finally:
                ready.set()

        loop.create_task(boot())
        loop.run_forever()

    thread = threading.Thread(target=run, name="model-server", daemon=True)
    thread.start()
    ready.wait(60)
    if failure:
        loop.call_soon_threadsafe(loop.stop)
        raise failure[0]
    return RunningServer(server, loop, thread)
