"""The gRPC API's transport on a native I/O thread (``serving/_native_grpc.c``, HTTP/2 by nghttp2).

grpc.aio runs a call's machinery on the event loop, holding the GIL the batch threads need, and wakes
several native threads per call. This transport keeps HTTP/2 on its own thread; the loop takes complete
unary calls in bulk and runs the same servicers (``serving.grpc_service``) with a small context.
What a gRPC server decides is decided here, as grpc's own server does: unknown methods, framing,
compression, deadlines, metadata, status codes and their messages.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import time
import zlib
from typing import Any, Iterable

import grpc

from serving.native_http import OneWakePerPass, listening_socket

log = logging.getLogger("serving.grpc")

try:
    from serving import _native_grpc
except ImportError as exc:  # not built: `make install` compiles it
    _native_grpc = None
    IMPORT_ERROR: str | None = str(exc)
else:
    IMPORT_ERROR = None

# Headers that are the transport's, not the call's metadata (grpc's server leaves them out too).
_RESERVED = frozenset(("content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
                       "grpc-message-type", "grpc-status", "grpc-message", "grpc-status-details-bin"))
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_PERCENT_SAFE = frozenset(range(0x20, 0x7F)) - {ord("%")}


def native_available() -> bool:
    return _native_grpc is not None


class _Abort(Exception):
    """Raised by :meth:`_Context.abort`, as grpc.aio's ``AbortError``: the call ends with this status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class _CallDetails(grpc.HandlerCallDetails):
    def __init__(self, method: str, invocation_metadata: tuple) -> None:
        self.method, self.invocation_metadata = method, invocation_metadata


class _Context:
    """The part of ``grpc.aio.ServicerContext`` the servicers use."""

    __slots__ = ("_metadata", "_deadline")

    def __init__(self, metadata: tuple, deadline: float | None) -> None:
        self._metadata, self._deadline = metadata, deadline

    def invocation_metadata(self) -> tuple:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: tuple = ()) -> None:
        raise _Abort(code, details)


def parse_timeout(value: str) -> float | None:
    """``grpc-timeout`` (up to 8 digits and a unit) in seconds; None when malformed, as if absent."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit() or value[-1] not in _TIMEOUT_UNITS:
        return None
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]


def percent_encode(message: str) -> bytes:
    """``grpc-message`` encoding: UTF-8, with bytes outside printable ASCII (and '%') as %XX."""
    raw = message.encode("utf-8", "replace")
    if all(byte in _PERCENT_SAFE for byte in raw):
        return raw
    return b"".join(bytes((byte,)) if byte in _PERCENT_SAFE else b"%%%02X" % byte for byte in raw)


def _metadata(headers: tuple) -> tuple[tuple[str, Any], ...]:
    """Call metadata as grpc gives it: reserved headers left out, ``-bin`` values base64-decoded to bytes."""
    out = []
    for name, value in headers:
        if name in _RESERVED:
            continue
        if name.endswith("-bin"):
            try:
                out.append((name, base64.b64decode(value + "=" * (-len(value) % 4))))
            except ValueError:
                continue
        else:
            out.append((name, value))
    return tuple(out)


def _message(body: bytes, headers: tuple, max_bytes: int) -> bytes:
    """The one request message of a unary call, decompressed; a problem is an :class:`_Abort`."""
    if len(body) < 5:
        raise _Abort(grpc.StatusCode.INTERNAL, "Missing request message in a unary call")
    length = int.from_bytes(body[1:5], "big")
    if len(body) != 5 + length:
        raise _Abort(grpc.StatusCode.INTERNAL, "A unary call must carry exactly one request message")
    if length > max_bytes:
        raise _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"Received message larger than max ({length} vs. {max_bytes})")
    message = body[5:]
    if body[0] == 0:
        return message
    encoding = next((value for name, value in headers if name == "grpc-encoding"), "identity")
    try:
        if encoding == "gzip":
            message = zlib.decompress(message, wbits=31)
        elif encoding == "deflate":
            message = zlib.decompress(message)
        else:
            raise _Abort(grpc.StatusCode.UNIMPLEMENTED,
                         f"Compression algorithm '{encoding}' is not supported; send identity, deflate or gzip")
    except zlib.error as exc:
        raise _Abort(grpc.StatusCode.INTERNAL, f"Cannot decompress the {encoding} request message: {exc}") from None
    if len(message) > max_bytes:
        raise _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                     f"Received message larger than max ({len(message)} vs. {max_bytes})")
    return message


class NativeGrpcServer(OneWakePerPass):
    """The subset of ``grpc.aio.Server`` the model server uses, on the native transport."""

    def __init__(self, host: str, port: int, max_message_bytes: int = 2**31 - 1) -> None:
        if _native_grpc is None:
            raise RuntimeError(f"the native gRPC transport is not built ({IMPORT_ERROR}); run `make install` "
                               "(it needs libnghttp2-dev), or pass --grpc_transport=grpcio")
        self.host, self.port, self.max_message_bytes = host, port, max_message_bytes
        self._handlers: list[grpc.GenericRpcHandler] = []
        self._methods: dict[str, grpc.RpcMethodHandler | None] = {}
        self._tasks: set[asyncio.Task] = set()

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._handlers.extend(handlers)

    async def start(self) -> int:
        self._loop = asyncio.get_running_loop()
        sock = listening_socket(self.host, self.port)
        try:
            self.port = sock.getsockname()[1]
            self._native = _native_grpc.Server(sock.fileno(), self.max_message_bytes)
        finally:
            sock.close()  # the native server holds its own descriptor
        self._loop.add_reader(self._native.notify_fd(), self._on_ready)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """GOAWAY first, so clients take new calls elsewhere; calls in flight get ``grace`` seconds."""
        native = self._native
        if native is None:
            return
        native.drain()
        if self._tasks and grace:
            await asyncio.wait(set(self._tasks), timeout=grace)
        self._native = None
        self._loop.remove_reader(native.notify_fd())  # type: ignore[union-attr]
        native.flush()
        native.stop()

    def stats(self) -> dict[str, int]:
        return self._native.stats() if self._native is not None else {}

    def _method(self, path: str, metadata: tuple) -> grpc.RpcMethodHandler | None:
        if path in self._methods:
            return self._methods[path]
        found = None
        for handler in self._handlers:
            found = handler.service(_CallDetails(path, metadata))
            if found is not None:
                break
        if found is not None and (found.request_streaming or found.response_streaming):
            found = None  # the services here are unary; a streaming method is not offered
        if len(self._methods) < 1024:  # unknown paths are remembered too, up to a bound
            self._methods[path] = found
        return found

    def _on_ready(self) -> None:
        native = self._native
        if native is None:
            return
        for conn, stream, path, headers, body, too_large in native.take():
            task = self._loop.create_task(self._call(conn, stream, path, headers, body, too_large))  # type: ignore[union-attr]
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, conn: int, stream: int, path: str, headers: tuple, body: bytes, too_large: bool) -> None:
        try:
            if too_large:
                raise _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"Received message larger than max ({self.max_message_bytes} bytes)")
            metadata = _metadata(headers)
            method = self._method(path, metadata)
            if method is None:
                raise _Abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
            deadline = None
            for name, value in headers:
                if name == "grpc-timeout":
                    timeout = parse_timeout(value)
                    deadline = None if timeout is None else time.monotonic() + timeout
            message = _message(body, headers, self.max_message_bytes)
            request = method.request_deserializer(message) if method.request_deserializer else message
            response = await method.unary_unary(request, _Context(metadata, deadline))
            out = method.response_serializer(response) if method.response_serializer else response
        except _Abort as abort:
            self._respond(conn, stream, abort.code.value[0], percent_encode(abort.details), None)
            return
        except Exception as exc:  # noqa: BLE001 - an undecodable request or a servicer bug: UNKNOWN, as grpc.aio
            log.exception("unexpected error in gRPC call %s", path)
            self._respond(conn, stream, grpc.StatusCode.UNKNOWN.value[0], percent_encode(f"Unexpected {type(exc)}: {exc}"), None)
            return
        self._respond(conn, stream, 0, None, out)

    def _respond(self, conn: int, stream: int, status: int, message: bytes | None, body: bytes | None) -> None:
        self._queue_answer(conn, stream, status, message, body)
