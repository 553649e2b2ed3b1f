"""REST on uvicorn (httptools parser) inside the event loop that also runs gRPC.

uvicorn owns HTTP/1.1: parsing, keep-alive and pipelining, chunked bodies, ``Expect: 100-continue``,
Date headers, graceful shutdown. Its settings carry the keep-alive timeout; the ASGI app (``asgi``)
bounds the body size and the time the body may take. The one thing neither bounds is a request head
that trickles in or never ends: ``HeadLimitedProtocol`` adds that bound to uvicorn's protocol.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Callable, Iterator

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.api.asgi import Handler, Limits, RestApp, read_timeout_error

log = logging.getLogger("serving.http")

MAX_HEAD_BYTES = 64 * 1024
GRACE_SECONDS = 5.0  # requests in flight at stop get this long to finish


def headers_too_large_error() -> str:
    return f"Request headers exceed {MAX_HEAD_BYTES} bytes"


MALFORMED = ("Malformed HTTP request: the request line, a header or the body framing is not valid HTTP/1.1; "
             "send a well-formed request")


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, its 400s in the server's JSON error format, plus three bounds it
    lacks: a request head must arrive within the read timeout (else 408) and within ``MAX_HEAD_BYTES``
    (else 431), and a connection that never sends a request is closed after the keep-alive timeout.
    uvicorn arms its keep-alive timer only after a response and has no head-size bound with httptools,
    so a silent client, a slow or an endless head would each hold a connection."""

    read_timeout: float = 30.0
    error_body: Callable[[str], bytes] = staticmethod(lambda message: message.encode())

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._head_bytes = -1  # -1: no request head in progress
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.read_timeout, self._refuse, 408,
                                                read_timeout_error(self.read_timeout))

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_bytes >= 0:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(431, headers_too_large_error())

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """What httptools refuses, answered in the server's JSON error format instead of uvicorn's text."""
        self._refuse(400, MALFORMED)

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
        reason = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
                             b"content-length: %d\r\n\r\n%s" % (status, reason, len(body), body))
        self.transport.close()


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the model server, which stops REST and gRPC together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound here, not by uvicorn, so a taken port is an ``OSError`` the caller sees (uvicorn would exit)
    and port 0 tells which port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind REST port {host}:{port} ({exc.strerror}); is another server running on it?") from None
    sock.setblocking(False)
    return sock


class RestServer:
    """``await start()`` returns the port; ``await stop()`` lets requests in flight finish."""

    def __init__(self, handler: Handler, host: str, port: int, limits: Limits,
                 error_body: Callable[[str], bytes]) -> None:
        self.host, self.port, self.limits = host, port, limits
        protocol = type("RestProtocol", (HeadLimitedProtocol,), {
            "read_timeout": limits.request_timeout, "error_body": staticmethod(error_body)})
        self.config = uvicorn.Config(
            RestApp(handler, limits, error_body), http=protocol, loop="none", lifespan="off", ws="none",
            interface="asgi3", proxy_headers=False, server_header=False, date_header=True, access_log=False,
            log_config=None, timeout_keep_alive=limits.keepalive_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=GRACE_SECONDS, backlog=1024,  # type: ignore[arg-type]
        )
        self.server = _EmbeddedServer(self.config)
        self._socket: socket.socket | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> int:
        self._socket = listening_socket(self.host, self.port)
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
