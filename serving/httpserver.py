"""A small HTTP/1.1 server on asyncio: keep-alive, pipelining, body limits, slow-client timeouts.

Written for this server's needs (JSON in, JSON out, exact headers as TF Serving's libevent sends
them: Content-Type, Date, Content-Length, no Server header) and for throughput on few cores.
"""
from __future__ import annotations

import asyncio
import email.utils
import logging
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable

log = logging.getLogger("serving.http")

REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
    413: "Payload Too Large", 429: "Client Error", 431: "Request Header Fields Too Large", 499: "Client Error",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable", 504: "Gateway Time-out",
}
MAX_HEADER_BYTES = 64 * 1024


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    peer: str


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * 1024 * 1024
    request_timeout: float = 30.0  # a request must arrive complete within this
    keepalive_timeout: float = 75.0


class _DateCache:
    def __init__(self) -> None:
        self.second = 0
        self.value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = email.utils.formatdate(now, usegmt=True).encode()
        return self.value


_DATE = _DateCache()


def response_head(response: Response) -> bytes:
    """Status line, Content-Type and extra headers; the transport adds Connection, Date and Content-Length."""
    head = b"HTTP/1.1 %d %s\r\n" % (response.status, REASONS.get(response.status, "Unknown").encode())
    if response.content_type:
        head += b"Content-Type: " + response.content_type.encode() + b"\r\n"
    for name, value in response.headers:
        head += f"{name}: {value}\r\n".encode("latin-1")
    return head


def encode_response(response: Response, keep_alive: bool) -> bytes:
    close = b"" if keep_alive and not response.close else b"Connection: close\r\n"
    return (response_head(response) + close + b"Date: " + _DATE.get()
            + b"\r\nContent-Length: %d\r\n\r\n" % len(response.body) + response.body)


# ---- protocol errors: one wording for both transports ---------------------------------------------

def request_line_error(line: str) -> str:
    return f"Malformed HTTP request line: {line[:100]!r}"


def header_line_error(line: str) -> str:
    return f"Malformed HTTP header line: {line[:100]!r}"


def headers_too_large_error() -> str:
    return f"Request headers exceed {MAX_HEADER_BYTES} bytes"


def too_large_error(size: int, limit: int) -> str:
    return (f"Request body of {size} bytes exceeds the limit of {limit} bytes; "
            "send fewer rows per request or raise --rest_api_max_body_bytes")


def read_timeout_error(seconds: float) -> str:
    return f"Request not received completely within {seconds:g} s; send the whole request promptly"


LENGTH_NOT_A_NUMBER = "Content-Length is not a number"
LENGTH_NEGATIVE = "Content-Length is negative"
MALFORMED_CHUNKED = "Malformed chunked request body"


class HttpError(Exception):
    """A request the transport rejects before any handler sees it; answered with ``status`` and closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise HttpError(400, "Content-Encoding says gzip but the body is not valid gzip") from None
    if len(out) > limit:
        raise HttpError(413, too_large_error(len(out), limit))
    return out


class HttpProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler, limits: Limits, error_body: Callable[[str], bytes],
                 connections: set["HttpProtocol"]) -> None:
        self.handler = handler
        self.limits = limits
        self.error_body = error_body
        self.connections = connections
        self.buffer = bytearray()
        self.pending: deque[tuple[Request, bool]] = deque()
        self.busy = False
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.peer = ""
        self.sent_continue = False

    # ---- connection events -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        self.loop = asyncio.get_running_loop()
        self.connections.add(self)
        self._arm(self.limits.keepalive_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()

    def _arm(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(seconds, self._timed_out)

    def _timed_out(self) -> None:
        self.timer = None
        if self.busy:
            return
        if self.buffer:  # a request started but never finished arriving: a slow or stuck client
            self._fail(408, read_timeout_error(self.limits.request_timeout))
        else:
            self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def _fail(self, status: int, message: str) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(encode_response(Response(status, self.error_body(message)), keep_alive=False))
        self.buffer.clear()
        self.close()

    # ---- parsing -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        was_empty = not self.buffer
        self.buffer += data
        if was_empty and not self.busy:
            self._arm(self.limits.request_timeout)
        try:
            self._parse()
        except HttpError as exc:
            self._fail(exc.status, exc.message)

    def _parse(self) -> None:
        while self.buffer and not self.closed:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    raise HttpError(431, headers_too_large_error())
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                raise HttpError(400, request_line_error(lines[0]))
            method, target, version = parts
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    raise HttpError(400, header_line_error(line))
                key = name.strip().lower()
                headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
            body_start = end + 4
            if "chunked" in headers.get("transfer-encoding", "").lower():
                decoded = self._dechunk(body_start)
                if decoded is None:
                    self._continue(headers)
                    return
                body, consumed = decoded
            else:
                try:
                    length = int(headers.get("content-length", "0"))
                except ValueError:
                    raise HttpError(400, LENGTH_NOT_A_NUMBER) from None
                if length < 0:
                    raise HttpError(400, LENGTH_NEGATIVE)
                if length > self.limits.max_body_bytes:
                    raise HttpError(413, self._too_large(length))
                if len(self.buffer) - body_start < length:
                    self._continue(headers)
                    return
                body, consumed = bytes(self.buffer[body_start: body_start + length]), body_start + length
            del self.buffer[:consumed]
            self.sent_continue = False
            if "gzip" in headers.get("content-encoding", "").lower():
                body = gunzip(body, self.limits.max_body_bytes)
            connection = headers.get("connection", "").lower()
            keep_alive = ("close" not in connection) if version == "HTTP/1.1" else ("keep-alive" in connection)
            self.pending.append((Request(method, target, headers, body, self.peer), keep_alive))
            if not keep_alive:
                self.buffer.clear()
            self._next()

    def _too_large(self, size: int) -> str:
        return too_large_error(size, self.limits.max_body_bytes)

    def _continue(self, headers: dict[str, str]) -> None:
        if not self.sent_continue and headers.get("expect", "").lower() == "100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.sent_continue = True

    def _dechunk(self, start: int) -> tuple[bytes, int] | None:
        body = bytearray()
        pos = start
        while True:
            line_end = self.buffer.find(b"\r\n", pos)
            if line_end < 0:
                return None
            try:
                size = int(bytes(self.buffer[pos:line_end]).split(b";")[0], 16)
            except ValueError:
                raise HttpError(400, MALFORMED_CHUNKED) from None
            if len(body) + size > self.limits.max_body_bytes:
                raise HttpError(413, self._too_large(len(body) + size))
            if size == 0:
                trailer_end = self.buffer.find(b"\r\n", line_end + 2)
                if trailer_end < 0:
                    return None
                return bytes(body), trailer_end + 2
            if len(self.buffer) < line_end + 2 + size + 2:
                return None
            body += self.buffer[line_end + 2: line_end + 2 + size]
            pos = line_end + 2 + size + 2

    # ---- dispatch ----------------------------------------------------------------------------

    def _next(self) -> None:
        if self.busy or not self.pending or self.closed:
            return
        self.busy = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        request, keep_alive = self.pending.popleft()
        self.loop.create_task(self._run(request, keep_alive))

    async def _run(self, request: Request, keep_alive: bool) -> None:
        try:
            response = await self.handler(request)
        except Exception:  # noqa: BLE001 - a handler bug must not kill the connection loop silently
            log.exception("unhandled error serving %s %s", request.method, request.target)
            response = Response(500, self.error_body("Internal server error; see the server log"))
        if self.closed:
            return
        keep = keep_alive and not response.close
        self.transport.write(encode_response(response, keep))  # type: ignore[union-attr]
        self.busy = False
        if not keep:
            self.close()
            return
        self._arm(self.limits.request_timeout if self.buffer else self.limits.keepalive_timeout)
        self._next()


class HttpServer:
    def __init__(self, handler: Handler, host: str, port: int, limits: Limits, error_body: Callable[[str], bytes]) -> None:
        self.handler, self.host, self.port, self.limits, self.error_body = handler, host, port, limits, error_body
        self.connections: set[HttpProtocol] = set()
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: HttpProtocol(self.handler, self.limits, self.error_body, self.connections),
            self.host, self.port, reuse_address=True, backlog=1024,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for connection in list(self.connections):
                connection.close()
            await self.server.wait_closed()
