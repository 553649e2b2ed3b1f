"""The ASGI app in front of the REST handler: reads the body within the server's limits, answers with
TF Serving's headers, and keeps a handler bug from reaching the client as anything but a 500."""
from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from errors import EsteiraError

log = logging.getLogger("serving.http")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Request:
    """A complete REST request as the handler sees it: header names lower-case, repeats joined by ", "."""

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
    """What a REST client may send; the server library enforces the rest (see ``http_server``)."""

    max_body_bytes: int = 64 * 1024 * 1024
    request_timeout: float = 30.0  # a request must arrive complete within this
    keepalive_timeout: float = 75.0  # an idle connection is closed after this
    max_connections: int = 1000  # open connections; one more is answered 503 and closed
    max_header_bytes: int = 64 * 1024  # request line and headers (431 beyond)
    max_headers: int = 100  # headers in one request (431 beyond)
    max_pipelined: int = 100  # requests queued behind the one being answered on a connection


def too_large_error(size: int, limit: int) -> str:
    return (f"Request body of {size} bytes exceeds the limit of {limit} bytes; "
            "send fewer rows per request or raise --rest_api_max_body_bytes")


def read_timeout_error(seconds: float) -> str:
    return f"Request not received completely within {seconds:g} s; send the whole request promptly"


class HttpError(EsteiraError):
    """A request refused before the handler sees it; answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _Disconnected(EsteiraError):
    """The client went away before its body arrived; there is no one to answer."""


def gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise HttpError(400, "Content-Encoding says gzip but the body is not valid gzip") from None
    if len(out) > limit:
        raise HttpError(413, too_large_error(len(out), limit))
    return out


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it outgrows ``limit`` (nothing more is buffered).

    A body that comes in pieces grows one buffer rather than keeping every piece: thousands of live
    pieces of a large body fragment the heap, and the server's memory stayed up after they were freed."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _Disconnected
    chunk = message.get("body", b"")
    if len(chunk) > limit:
        raise HttpError(413, too_large_error(len(chunk), limit))
    if not message.get("more_body", False):
        return chunk
    buffer = bytearray(chunk)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if len(buffer) + len(chunk) > limit:
            raise HttpError(413, too_large_error(len(buffer) + len(chunk), limit))
        buffer += chunk
        if not message.get("more_body", False):
            return bytes(buffer)


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1").strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class RestApp:
    """ASGI 3 app: one ``Request`` in, one ``Response`` out, on the server's event loop."""

    def __init__(self, handler: Handler, limits: Limits, error_body: Callable[[str], bytes]) -> None:
        self.handler = handler
        self.limits = limits
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served
            return
        headers = _headers(scope)
        try:
            body = await self._body(headers, receive)
        except HttpError as exc:
            await self._send(send, Response(exc.status, self.error_body(exc.message), close=True))
            return
        except _Disconnected:
            return
        query = scope.get("query_string", b"")
        target = scope["raw_path"].decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else ""
        try:
            response = await self.handler(Request(scope["method"], target, headers, body, peer))
        except Exception:  # a handler bug answers 500 and the connection stays usable
            log.exception("unhandled error serving %s %s", scope["method"], target)
            response = Response(500, self.error_body("Internal server error; see the server log"))
        await self._send(send, response)

    async def _body(self, headers: dict[str, str], receive: Receive) -> bytes:
        limit = self.limits.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:  # digits only: httptools refuses anything else
            if int(declared) > limit:  # refused before a byte of it is read
                raise HttpError(413, too_large_error(int(declared), limit))
            if declared == "0":
                return b""
        elif "transfer-encoding" not in headers:
            return b""
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                body = await read_body(receive, limit)
        except TimeoutError:
            raise HttpError(408, read_timeout_error(self.limits.request_timeout)) from None
        if "gzip" in headers.get("content-encoding", "").lower():
            body = gunzip(body, limit)
        return body

    @staticmethod
    async def _send(send: Send, response: Response) -> None:
        """TF Serving's headers: Content-Type, extras, Content-Length (uvicorn adds Date and Connection)."""
        head = [(b"content-type", response.content_type.encode())] if response.content_type else []
        head += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
        head.append((b"content-length", b"%d" % len(response.body)))
        if response.close:
            head.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": response.status, "headers": head})
        await send({"type": "http.response.body", "body": response.body})
