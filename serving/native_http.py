"""The REST API's HTTP/1.1 transport on a native I/O thread (``serving/_native_http.c``).

The asyncio transport (:mod:`serving.httpserver`) reads, parses, frames and sends on the event loop, all
while holding the GIL that the batch threads need. This one does those on its own thread without the
GIL; the loop only takes complete requests, in bulk, runs the same handler and hands the answer back.
Both speak the same protocol (tests/serving/test_http_transports.py runs one suite against each).
"""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Callable

from serving.httpserver import (
    LENGTH_NEGATIVE, LENGTH_NOT_A_NUMBER, MALFORMED_CHUNKED, Handler, HttpError, Limits, Request, Response, gunzip,
    header_line_error, headers_too_large_error, read_timeout_error, request_line_error, response_head, too_large_error,
)

log = logging.getLogger("serving.http")

try:
    from serving import _native_http
except ImportError as exc:  # not built: `make install` compiles it
    _native_http = None
    IMPORT_ERROR: str | None = str(exc)
else:
    IMPORT_ERROR = None


def native_available() -> bool:
    return _native_http is not None


def _protocol_error(kind: int, detail: str, number: int, limits: Limits) -> HttpError:
    """The C side reports what went wrong; the wording is the asyncio transport's."""
    n = _native_http
    if kind == n.ERR_REQUEST_LINE:
        return HttpError(400, request_line_error(detail))
    if kind == n.ERR_HEADER_LINE:
        return HttpError(400, header_line_error(detail))
    if kind == n.ERR_HEADERS_TOO_LARGE:
        return HttpError(431, headers_too_large_error())
    if kind == n.ERR_LENGTH_NAN:
        return HttpError(400, LENGTH_NOT_A_NUMBER)
    if kind == n.ERR_LENGTH_NEGATIVE:
        return HttpError(400, LENGTH_NEGATIVE)
    if kind == n.ERR_TOO_LARGE:
        return HttpError(413, too_large_error(number, limits.max_body_bytes))
    if kind == n.ERR_CHUNKED:
        return HttpError(400, MALFORMED_CHUNKED)
    if kind == n.ERR_TIMEOUT:
        return HttpError(408, read_timeout_error(limits.request_timeout))
    return HttpError(400, "Malformed HTTP request")


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound like asyncio's create_server: SO_REUSEADDR, IPv6 sockets IPv6-only, backlog 1024."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


class OneWakePerPass:
    """Answers queued on a native server (``self._native``), whose I/O thread is woken once per event loop
    pass, after every answer ready in that pass: one eventfd write per batch instead of one per answer
    (it cost 7 % of the loop's time per single-row request). Shared by the native REST and gRPC transports."""

    _native: Any = None
    _loop: asyncio.AbstractEventLoop | None = None
    _flush_pending = False

    def _queue_answer(self, *answer: Any) -> None:
        native = self._native
        if native is None:
            return
        native.respond(*answer)
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]

    def _flush(self) -> None:
        self._flush_pending = False
        if self._native is not None:
            self._native.flush()


class NativeHttpServer(OneWakePerPass):
    """Same interface as :class:`serving.httpserver.HttpServer`."""

    def __init__(self, handler: Handler, host: str, port: int, limits: Limits, error_body: Callable[[str], bytes]) -> None:
        if _native_http is None:
            raise RuntimeError(f"the native HTTP transport is not built ({IMPORT_ERROR}); run `make install`, "
                               "or pass --rest_api_http_transport=asyncio")
        self.handler, self.host, self.port, self.limits, self.error_body = handler, host, port, limits, error_body

    async def start(self) -> int:
        self._loop = asyncio.get_running_loop()
        sock = listening_socket(self.host, self.port)
        try:
            self.port = sock.getsockname()[1]
            limits = self.limits
            self._native = _native_http.Server(sock.fileno(), limits.max_body_bytes, limits.request_timeout,
                                               limits.keepalive_timeout)
        finally:
            sock.close()  # the native server holds its own descriptor
        self._loop.add_reader(self._native.notify_fd(), self._on_ready)
        return self.port

    async def stop(self) -> None:
        native, self._native = self._native, None
        if native is None:
            return
        self._loop.remove_reader(native.notify_fd())  # type: ignore[union-attr]
        native.stop()  # closes every connection; answers of requests still running are dropped

    def stats(self) -> dict[str, int]:
        return self._native.stats() if self._native is not None else {}

    def _on_ready(self) -> None:
        native = self._native
        if native is None:
            return
        create_task = self._loop.create_task  # type: ignore[union-attr]
        for conn, method, target, headers, body, keep_alive, peer in native.take():
            if method is None:  # a protocol error: target is the kind, headers the detail, body a number
                self._reject(conn, _protocol_error(target, headers, body, self.limits))
                continue
            if "content-encoding" in headers and "gzip" in headers["content-encoding"].lower():
                try:
                    body = gunzip(body, self.limits.max_body_bytes)
                except HttpError as error:
                    self._reject(conn, error)
                    continue
            create_task(self._run(conn, Request(method, target, headers, body, peer), keep_alive))

    async def _run(self, conn: int, request: Request, keep_alive: bool) -> None:
        try:
            response = await self.handler(request)
        except Exception:  # noqa: BLE001 - a handler bug must not kill the connection silently
            log.exception("unhandled error serving %s %s", request.method, request.target)
            response = Response(500, self.error_body("Internal server error; see the server log"))
        self._respond(conn, response_head(response), response.body, not keep_alive or response.close)

    def _reject(self, conn: int, error: HttpError) -> None:
        """A request the transport refuses: the error body, then the connection closes."""
        self._respond(conn, response_head(Response(error.status, b"")), self.error_body(error.message), True)

    def _respond(self, conn: int, head: bytes, body: bytes, close: bool) -> None:
        self._queue_answer(conn, head, body, close)
