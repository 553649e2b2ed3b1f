"""gRPC on grpcio's asyncio server: the TCP port, an optional Unix socket, the bounds one client may
hold (message size, streams per connection, call time) and TF Serving's ``--grpc_channel_arguments``
turned into server options."""
from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from errors import EsteiraError

log = logging.getLogger("serving")

UNLIMITED = 2**31 - 1  # TF Serving sends messages of any size gRPC allows
DEFAULT_OPTIONS: dict[str, int | str] = {
    "grpc.max_send_message_length": UNLIMITED,
    "grpc.so_reuseport": 0,  # a second server on the same port must fail, not share it
}


@dataclass(frozen=True)
class GrpcBounds:
    """What one gRPC client may hold; ``--grpc_channel_arguments`` may still set gRPC's own arguments."""

    max_receive_message_bytes: int = 64 * 1024 * 1024  # RESOURCE_EXHAUSTED beyond (TF Serving: 2 GiB)
    max_concurrent_streams: int = 100  # calls at once on one connection (HTTP/2 SETTINGS)
    max_call_seconds: float = 60.0  # receiving the request and inference together


def call_too_long_error(seconds: float) -> str:
    return (f"Call did not finish within {seconds:g} s, the server's limit for one call whatever deadline "
            "the client sent; send the whole request promptly, or raise --grpc_max_call_seconds")


class CallTimeLimit(grpc.aio.ServerInterceptor):
    """Ends every unary call after ``seconds``, counted from its headers: a client that never sends its
    message (or never finishes it), or sends a deadline of years, would otherwise hold the call forever,
    since gRPC bounds a call only by the deadline the client chose. A unary handler is only called once
    its message has arrived, so the call is served as a client-streaming one that reads one message
    under the time limit; the client sees no difference."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._bounded_handlers: dict[Any, Any] = {}  # one per method handler, built on its first call

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        bounded = self._bounded_handlers.get(handler)
        if bounded is None:
            bounded = self._bounded_handlers[handler] = grpc.stream_unary_rpc_method_handler(
                self._bounded(handler.unary_unary), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return bounded

    def _bounded(self, behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
                 ) -> Callable[..., Awaitable[Any]]:
        seconds = self.seconds

        async def call(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                async with asyncio.timeout(seconds):
                    async for request in requests:
                        return await behavior(request, context)
            except TimeoutError:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, call_too_long_error(seconds))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "The call ended without its request message; send exactly one message")
            return None  # not reached: abort raises

        return call
# Server-side channel arguments of gRPC core that take an integer (grpc_types.h); the others take a string.
INTEGER_ARGUMENTS = frozenset({
    "grpc.max_receive_message_length", "grpc.max_send_message_length", "grpc.max_concurrent_streams",
    "grpc.max_metadata_size", "grpc.absolute_max_metadata_size", "grpc.so_reuseport",
    "grpc.keepalive_time_ms", "grpc.keepalive_timeout_ms", "grpc.keepalive_permit_without_calls",
    "grpc.http2.max_pings_without_data", "grpc.http2.min_ping_interval_without_data_ms",
    "grpc.http2.min_recv_ping_interval_without_data_ms", "grpc.http2.max_ping_strikes",
    "grpc.http2.max_frame_size", "grpc.http2.bdp_probe", "grpc.http2.lookahead_bytes",
    "grpc.http2.write_buffer_size", "grpc.http2.hpack_table_size.decoder", "grpc.http2.hpack_table_size.encoder",
    "grpc.max_connection_idle_ms", "grpc.max_connection_age_ms", "grpc.max_connection_age_grace_ms",
    "grpc.default_compression_algorithm", "grpc.default_compression_level", "grpc.enable_retries",
    "grpc.server_handshake_timeout_ms", "grpc.resource_quota_max_memory", "grpc.optimization_target_ms",
    "grpc.max_allowed_incoming_connections",
})
STRING_ARGUMENTS = frozenset({"grpc.primary_user_agent", "grpc.secondary_user_agent", "grpc.optimization_target"})


class ChannelArgumentError(EsteiraError, ValueError):
    """A ``--grpc_channel_arguments`` entry gRPC cannot take; the message names it and the fix."""


def parse_channel_arguments(text: str, *, warn: bool = True) -> dict[str, int | str]:
    """``key=value,key=value`` as TF Serving reads it. Keys gRPC's server does not know are left out with
    a warning (gRPC would ignore them too); a known integer key with a non-integer value is an error."""
    options: dict[str, int | str] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = (piece.strip() for piece in entry.partition("="))
        if not sep or not key:
            raise ChannelArgumentError(
                f"--grpc_channel_arguments entry {entry!r} is not key=value; "
                "write e.g. --grpc_channel_arguments=grpc.max_concurrent_streams=100,grpc.keepalive_time_ms=60000")
        if key in INTEGER_ARGUMENTS:
            try:
                options[key] = int(value)
            except ValueError:
                raise ChannelArgumentError(
                    f"--grpc_channel_arguments: {key} takes an integer, got {value!r}") from None
        elif key in STRING_ARGUMENTS:
            options[key] = value
        elif warn:
            log.warning("--grpc_channel_arguments: %s is not a gRPC server argument; ignored", key)
    return options


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def create_grpc_server(channel_arguments: str = "", bounds: GrpcBounds = GrpcBounds(),
                       reuse_port: bool = False) -> grpc.aio.Server:
    """``reuse_port``: the workers of ``--server_processes`` share the port (SO_REUSEPORT); otherwise a second
    server on a taken port fails."""
    options = {**DEFAULT_OPTIONS, "grpc.so_reuseport": int(reuse_port),
               "grpc.max_receive_message_length": bounds.max_receive_message_bytes,
               "grpc.max_concurrent_streams": bounds.max_concurrent_streams,
               **parse_channel_arguments(channel_arguments)}
    return grpc.aio.server(options=list(options.items()), interceptors=[CallTimeLimit(bounds.max_call_seconds)])


def listen(server: grpc.aio.Server, host: str, port: int, socket_path: str = "",
           credentials: Callable[[], grpc.ServerCredentials] | None = None) -> int:
    """Bind the TCP port (when not 0) and the Unix socket (when given), with TLS when ``credentials`` makes
    each port's credentials (``--ssl_config_file``, both listeners as TF Serving); returns the TCP port."""

    def add(address: str) -> int:
        return server.add_secure_port(address, credentials()) if credentials else server.add_insecure_port(address)

    bound = 0
    if port:
        bound = add(bind_address(host, port))
        if bound == 0:
            raise OSError(f"cannot bind gRPC port {port}; is another server running on it?")
    if socket_path:
        if os.path.exists(socket_path):
            if not stat.S_ISSOCK(os.stat(socket_path).st_mode):
                raise OSError(f"--grpc_socket_path={socket_path} exists and is not a socket; name a new path")
            os.unlink(socket_path)  # left by a server that did not stop cleanly
        if add(f"unix:{socket_path}") == 0:
            raise OSError(f"cannot bind gRPC Unix socket {socket_path}; check that its folder exists and is writable")
    return bound
