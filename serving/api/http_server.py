"""REST on uvicorn (httptools parser) inside the event loop that also runs gRPC.

uvicorn owns HTTP/1.1: parsing, keep-alive and pipelining, chunked bodies, ``Expect: 100-continue``,
Date headers, graceful shutdown. Its settings carry the keep-alive timeout; the ASGI app (``asgi``)
bounds the body size and the time the body may take. What neither bounds (a head that trickles in or
never ends, too many headers, connections or pipelined requests) ``HeadLimitedProtocol`` adds to
uvicorn's protocol.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from errors import EsteiraError
from serving.api.asgi import Handler, Limits, RestApp, read_timeout_error

log = logging.getLogger("serving.http")

GRACE_SECONDS = 5.0  # requests in flight at stop get this long to finish


def headers_too_large_error(limit: int) -> str:
    return (f"Request headers exceed {limit} bytes; send fewer or shorter headers or raise "
            "--rest_api_max_header_bytes")


def too_many_headers_error(limit: int) -> str:
    return f"Request has more than {limit} headers; send fewer headers or raise --rest_api_max_headers"


def too_many_connections_error(limit: int) -> str:
    return (f"The server already holds {limit} REST connections; retry shortly, reuse a keep-alive connection "
            "or raise --rest_api_max_connections")


MALFORMED = ("Malformed HTTP request: the request line, a header or the body framing is not valid HTTP/1.1; "
             "send a well-formed request")
REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large",
           503: b"Service Unavailable"}
PIPELINE_FULL = (0, "")  # not an answer: the connection closes after the requests already queued


class _Refused(EsteiraError):
    """Raised in a parser callback to stop httptools; uvicorn then calls ``send_400_response``."""


class _OneWriteTransport:
    """The connection's transport, with a response's head held until its body is written, so that both
    leave in one system call and one TCP segment: uvicorn writes them apart, and the client then reads
    twice. A held head goes out before anything else the transport does (close, the response's end);
    ``100 Continue`` and bodies over 64 KiB are never joined (the client waits for the first; the second
    would be copied)."""

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if len(data) <= 65536:
                self._transport.write(head + data)
                return
            self._transport.write(head)
        elif data[:9] == b"HTTP/1.1 " and data[9:10] != b"1":
            self._head = data
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._head or b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, its 400s in the server's JSON error format, plus the bounds it lacks:
    a request head must arrive within the read timeout (else 408), within ``max_header_bytes`` and
    ``max_headers`` (else 431); at most ``max_connections`` connections are open (one more is answered
    503 and closed); at most ``max_pipelined`` requests wait behind the one being answered (the
    connection closes after those, unread requests unanswered, as a client retries them); and a
    connection that never sends a request, or only bytes that begin none (CRLFs), is closed after the
    keep-alive timeout. Trailers of chunked bodies are dropped: httptools reports them as headers, and
    uvicorn would add them to the request's.

    uvicorn arms its keep-alive timer only after a response, has no head-size or header-count bound with
    httptools, parses pipelined requests ahead without a bound, and answers its own connection limit
    only once a request head has arrived (a silent connection would hold its place)."""

    read_timeout: float = 30.0
    max_connections: int = 1000
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_pipelined: int = 100
    error_body: Callable[[str], bytes] = staticmethod(lambda message: message.encode())

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._head_bytes = -1  # -1: no request head in progress
        self._head_parsed = self._header_count = 0  # of the head in progress, as the parser reports it
        self._message_began = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_OneWriteTransport(transport))  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections:
            self._refuse(503, too_many_connections_error(self.max_connections))
            return
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._message_began = True
        self._head_bytes = self._head_parsed = self._header_count = 0
        self._head_timer = self.loop.call_later(self.read_timeout, self._refuse, 408,
                                                read_timeout_error(self.read_timeout))

    def on_url(self, url: bytes) -> None:
        self._count_parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_bytes < 0:  # a trailer after a chunked body: not part of the request's headers
            return
        self._header_count += 1
        if self._header_count > self.max_headers:
            self._refusal = (431, too_many_headers_error(self.max_headers))
            raise _Refused
        self._count_parsed(len(name) + len(value) + 4)  # "name: value\r\n"
        super().on_header(name, value)

    def _count_parsed(self, size: int) -> None:
        """A head that arrives whole in one read is parsed before ``data_received`` can count it."""
        self._head_parsed += size
        if self._head_parsed > self.max_header_bytes:
            self._refusal = (431, headers_too_large_error(self.max_header_bytes))
            raise _Refused

    def on_headers_complete(self) -> None:
        self._head_done()
        if self.pipeline and len(self.pipeline) >= self.max_pipelined:
            self._refusal = PIPELINE_FULL
            raise _Refused
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        idle_timer = self.timeout_keep_alive_task
        self._message_began = False
        super().data_received(data)  # uvicorn cancels the idle timer on any byte
        if idle_timer is not None and not self._message_began and self.timeout_keep_alive_task is None \
                and not self.transport.is_closing():  # bytes that begin no request (CRLFs) buy no idle time
            self.timeout_keep_alive_task = self.loop.call_at(idle_timer.when(), self.timeout_keep_alive_handler)
        if self._head_bytes >= 0:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, headers_too_large_error(self.max_header_bytes))

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]  # a HEAD answer writes no body
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """What httptools refuses (or a bound refused in a parser callback), answered in the server's JSON
        error format instead of uvicorn's text."""
        if self._refusal is PIPELINE_FULL:
            self.pipeline[0][0].keep_alive = False  # the last request queued answers with Connection: close
            return
        self._refuse(*(self._refusal or (400, MALFORMED)))

    def _head_done(self) -> None:
        self._head_bytes = -1
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, message: str) -> None:
        self._head_done()
        if self.transport.is_closing():
            return
        body = self.error_body(message)
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
                             b"content-length: %d\r\n\r\n%s" % (status, REASONS[status], len(body), body))
        self.transport.close()


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the model server, which stops REST and gRPC together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bound_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound as the servers bind (SO_REUSEADDR; ``reuse_port``: SO_REUSEPORT, so the workers of
    ``--server_processes`` listen on one port and the kernel spreads new connections over them); the
    bind's own ``OSError`` otherwise, the socket closed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    return sock


def listening_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """Bound here, not by uvicorn, so a taken port is an ``OSError`` the caller sees (uvicorn would exit)
    and port 0 tells which port it got."""
    try:
        sock = bound_socket(host, port, reuse_port)
    except OSError as exc:
        raise OSError(f"cannot bind REST port {host}:{port} ({exc.strerror}); "
                      "is another server running on it?") from None
    sock.setblocking(False)
    return sock


class RestServer:
    """``await start()`` returns the port; ``await stop()`` lets requests in flight finish."""

    def __init__(self, handler: Handler, host: str, port: int, limits: Limits,
                 error_body: Callable[[str], bytes], tls: dict[str, Any] | None = None,
                 reuse_port: bool = False) -> None:
        """``tls``: uvicorn's TLS keywords (``ServerTls.uvicorn_settings``), or None for plain HTTP;
        ``reuse_port``: share the port with the other workers (:func:`listening_socket`)."""
        self.host, self.port, self.limits, self.reuse_port = host, port, limits, reuse_port
        protocol = type("RestProtocol", (HeadLimitedProtocol,), {
            "read_timeout": limits.request_timeout, "max_connections": limits.max_connections,
            "max_header_bytes": limits.max_header_bytes, "max_headers": limits.max_headers,
            "max_pipelined": limits.max_pipelined, "error_body": staticmethod(error_body)})
        self.config = uvicorn.Config(
            RestApp(handler, limits, error_body), http=protocol, loop="none", lifespan="off", ws="none",
            interface="asgi3", proxy_headers=False, server_header=False, date_header=True, access_log=False,
            log_config=None, timeout_keep_alive=limits.keepalive_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=GRACE_SECONDS, backlog=1024,  # type: ignore[arg-type]
            **(tls or {}),
        )
        self.server = _EmbeddedServer(self.config)
        self._socket: socket.socket | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> int:
        self._socket = listening_socket(self.host, self.port, self.reuse_port)
        self.port = self._socket.getsockname()[1]
        self._task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[self._socket]))
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the REST server stopped while starting")
            await asyncio.sleep(0.005)
        return self.port

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        await self._task
        for connection in list(self.server.server_state.connections):  # clients that outstayed the grace
            connection.transport.close()
        self._task = None
