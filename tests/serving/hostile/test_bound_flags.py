"""The bounds' flags: documented defaults, and a clear error for a value that would lift a bound."""
from __future__ import annotations

import pytest

from serving.api.asgi import Limits
from serving.api.grpc_server import GrpcBounds
from serving.flags import FlagError, ServerFlags, parse_flags, usage

BOUNDS = ["rest_api_max_body_bytes", "request_read_timeout_seconds", "rest_api_idle_timeout_seconds",
          "rest_api_max_connections", "rest_api_max_header_bytes", "rest_api_max_headers",
          "rest_api_max_pipelined_requests", "grpc_max_receive_message_bytes", "grpc_max_concurrent_streams",
          "grpc_max_call_seconds"]


def test_flag_defaults_are_the_servers_defaults() -> None:
    """The flags' defaults and the server parts' own defaults (used when built without flags) agree."""
    flags, limits, grpc_bounds = ServerFlags(), Limits(), GrpcBounds()
    assert (flags.rest_api_max_body_bytes, flags.request_read_timeout_seconds, flags.rest_api_idle_timeout_seconds,
            flags.rest_api_max_connections, flags.rest_api_max_header_bytes, flags.rest_api_max_headers,
            flags.rest_api_max_pipelined_requests) == (
        limits.max_body_bytes, limits.request_timeout, limits.keepalive_timeout, limits.max_connections,
        limits.max_header_bytes, limits.max_headers, limits.max_pipelined)
    assert (flags.grpc_max_receive_message_bytes, flags.grpc_max_concurrent_streams, flags.grpc_max_call_seconds) == (
        grpc_bounds.max_receive_message_bytes, grpc_bounds.max_concurrent_streams, grpc_bounds.max_call_seconds)
    assert all(f"--{name}=" in usage() for name in BOUNDS)


@pytest.mark.parametrize("name", BOUNDS)
def test_a_bound_must_be_positive(name: str) -> None:
    with pytest.raises(FlagError, match=f"--{name} must be > 0 \\(got 0"):
        parse_flags(["--model_base_path=/m", f"--{name}=0"])


def test_grpc_message_bound_below_grpcs_own_maximum() -> None:
    with pytest.raises(FlagError, match="--grpc_max_receive_message_bytes must be below 2147483648"):
        parse_flags(["--model_base_path=/m", "--grpc_max_receive_message_bytes=2147483648"])
