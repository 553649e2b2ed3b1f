"""``tensorflow_model_server``'s command line (same names, meanings and defaults) plus Esteira's own flags."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from errors import EsteiraError
from serving.api.grpc_server import ChannelArgumentError, parse_channel_arguments

_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


class FlagError(EsteiraError, ValueError):
    """Bad command line; the message names the flag and what to pass instead."""


@dataclass
class ServerFlags:
    # --- TF Serving flags (model_servers/main.cc; defaults from server.h) ---
    port: int = 8500
    grpc_socket_path: str = ""
    grpc_channel_arguments: str = ""
    rest_api_port: int = 0
    rest_api_num_threads: int = 0
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    allow_version_labels_for_unavailable_models: bool = False
    enable_batching: bool = False
    batching_parameters_file: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    monitoring_config_file: str = ""
    saved_model_tags: str = "serve"
    enable_serialization_as_tensor_content: bool = False
    prefer_tflite_model: bool = False
    enable_grpc_healthcheck_service: bool = False
    ssl_config_file: str = ""
    version: bool = False
    # --- Esteira flags (no TF Serving equivalent) ---
    host: str = "0.0.0.0"
    remote_backend: str = ""
    remote_backend_ca_file: str = ""
    remote_backend_cert_file: str = ""
    remote_backend_key_file: str = ""
    canary_config_file: str = ""
    auth_token_file: str = ""
    auth_protect_probes: bool = False
    auth_protect_metrics: bool = False
    audit_log_file: str = ""
    audit_required: bool = True
    request_log_max_file_bytes: int = 64 * 1024 * 1024
    request_log_max_files: int = 10
    rest_api_max_body_bytes: int = 64 * 1024 * 1024
    request_read_timeout_seconds: float = 30.0
    rest_api_idle_timeout_seconds: float = 75.0
    rest_api_max_connections: int = 1000
    rest_api_max_header_bytes: int = 64 * 1024
    rest_api_max_headers: int = 100
    rest_api_max_pipelined_requests: int = 100
    grpc_max_receive_message_bytes: int = 64 * 1024 * 1024
    grpc_max_concurrent_streams: int = 100
    grpc_max_call_seconds: float = 60.0
    inference_threads: int = 0
    feedback_max_entries: int = 100_000
    feedback_max_bytes: int = 64 * 1024 * 1024
    feedback_ttl_seconds: float = 86_400.0
    log_level: str = "INFO"
    server_processes: int = 1
    server_worker_index: int = -1  # internal: set by the parent of --server_processes>1 on each worker it starts

    extra: dict = field(default_factory=dict, repr=False)


ESTEIRA_FLAGS = {
    "host", "remote_backend", "remote_backend_ca_file", "remote_backend_cert_file", "remote_backend_key_file",
    "canary_config_file", "auth_token_file", "auth_protect_probes",
    "auth_protect_metrics", "audit_log_file", "audit_required", "request_log_max_file_bytes", "request_log_max_files",
    "rest_api_max_body_bytes", "request_read_timeout_seconds",
    "rest_api_idle_timeout_seconds", "rest_api_max_connections", "rest_api_max_header_bytes", "rest_api_max_headers",
    "rest_api_max_pipelined_requests",
    "grpc_max_receive_message_bytes", "grpc_max_concurrent_streams", "grpc_max_call_seconds",
    "inference_threads", "feedback_max_entries", "feedback_max_bytes", "feedback_ttl_seconds", "log_level",
    "server_processes", "server_worker_index",
}
INTERNAL_FLAGS = {"server_worker_index"}  # not for users: left out of --help

HELP = {
    "port": "gRPC port (TF Serving: 8500)",
    "grpc_socket_path": "also serve gRPC on this Unix domain socket",
    "grpc_channel_arguments": "gRPC server arguments, key=value,key=value (e.g. grpc.max_concurrent_streams=100)",
    "rest_api_port": "REST port; 0 disables REST (TF Serving default; its Docker image uses 8501)",
    "rest_api_timeout_in_ms": "REST inference timeout in ms (answers 504)",
    "model_name": "model name in single-model mode",
    "model_base_path": "folder holding numeric version folders (single-model mode)",
    "model_config_file": "text ModelServerConfig (several models, policies, labels); overrides model_name/base_path",
    "model_config_file_poll_wait_seconds": "re-read the config file every N s (0 = read once)",
    "file_system_poll_wait_seconds": "look for new versions every N s (0 = once at start)",
    "allow_version_labels_for_unavailable_models": "let a new label point at a version not loaded yet",
    "enable_batching": "batch concurrent requests (see --batching_parameters_file)",
    "batching_parameters_file": "text BatchingParameters",
    "monitoring_config_file": "text MonitoringConfig; enables Prometheus metrics on the REST port",
    "enable_grpc_healthcheck_service": "grpc.health.v1.Health on the gRPC port: \"\" and one service per model name, "
                                       "SERVING while an AVAILABLE version serves",
    "prefer_tflite_model": "serve <version>/model.tflite instead of the SavedModel when the folder has one",
    "remote_backend": "gateway mode: forward inference to this TF Serving gRPC host:port",
    "remote_backend_ca_file": "gateway mode over TLS: PEM CA certificate(s) that sign the remote server's certificate",
    "remote_backend_cert_file": "gateway mode over mTLS: PEM client certificate chain presented to the remote server",
    "remote_backend_key_file": "gateway mode over mTLS: PEM private key of --remote_backend_cert_file",
    "ssl_config_file": "text SSLConfig (server_key, server_cert, custom_ca, client_verify: PEM text): TLS on gRPC "
                       "and REST, mTLS with client_verify; re-read when the file changes",
    "canary_config_file": "JSON weights per model and label for requests without a version",
    "auth_token_file": "bearer tokens, one per line (caller:token); also ESTEIRA_AUTH_TOKENS",
    "audit_log_file": "hash-chained access audit log (one line per request)",
    "audit_required": "with --audit_log_file: a request whose audit line cannot be written (disk full) is refused "
                      "(UNAVAILABLE, 503); false answers it and only counts esteira_audit_write_failures_total",
    "request_log_max_file_bytes": "a request log file (logging_config in the model config) is closed and a new "
                                  "one begun at this size",
    "request_log_max_files": "request log files kept per filename_prefix (the oldest are deleted)",
    "rest_api_max_body_bytes": "largest accepted REST request body",
    "request_read_timeout_seconds": "a REST request must arrive complete within this (slow clients get 408)",
    "rest_api_idle_timeout_seconds": "a REST connection without a request in progress is closed after this",
    "rest_api_max_connections": "open REST connections at most; one more is answered 503 and closed",
    "rest_api_max_header_bytes": "largest REST request head (request line and headers; 431 beyond)",
    "rest_api_max_headers": "most headers in one REST request (431 beyond)",
    "rest_api_max_pipelined_requests": "REST requests queued behind the one being answered on a connection "
                                       "(the connection closes after answering these)",
    "grpc_max_receive_message_bytes": "largest gRPC request message (RESOURCE_EXHAUSTED beyond); "
                                      "TF Serving's grpc.max_receive_message_length in --grpc_channel_arguments wins",
    "grpc_max_concurrent_streams": "gRPC calls at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)",
    "grpc_max_call_seconds": "no gRPC call lives longer, whatever deadline it sent: receiving the request and "
                             "inference together (DEADLINE_EXCEEDED beyond)",
    "feedback_max_entries": "predictions remembered for the feedback API (oldest evicted first)",
    "feedback_max_bytes": "bytes the remembered predictions may hold, the inputs a review needs included "
                          "(oldest evicted first)",
    "feedback_ttl_seconds": "how long a prediction is remembered for the feedback API",
    "server_processes": "worker processes sharing --port and --rest_api_port (SO_REUSEPORT), each with its own "
                        "models and batch queue; metrics summed over all (serving/README.md, \"Several processes\")",
}


def parse_flags(argv: list[str]) -> ServerFlags:
    """``--name=value``, ``--name value`` and bare ``--bool_flag``; unknown flags are errors."""
    flags = ServerFlags()
    types = {f.name: f.type for f in fields(ServerFlags) if f.name != "extra"}
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise FlagError(f"unexpected argument {arg!r}; flags look like --name=value (see --help)")
        name, sep, value = arg.lstrip("-").partition("=")
        if name not in types:
            raise FlagError(f"unknown argument: {arg} (see `esteira serve --help` for the accepted flags)")
        kind = types[name]
        if kind in (bool, "bool"):
            if not sep:
                if index < len(argv) and argv[index].lower() in _TRUE | _FALSE:
                    value = argv[index]
                    index += 1
                else:
                    value = "true"
            lowered = value.lower()
            if lowered not in _TRUE | _FALSE:
                raise FlagError(f"--{name} takes true or false, got {value!r}")
            setattr(flags, name, lowered in _TRUE)
            continue
        if not sep:
            if index >= len(argv):
                raise FlagError(f"--{name} needs a value: --{name}=VALUE")
            value = argv[index]
            index += 1
        try:
            if kind in (int, "int"):
                setattr(flags, name, int(value))
            elif kind in (float, "float"):
                setattr(flags, name, float(value))
            else:
                setattr(flags, name, value)
        except ValueError:
            wanted = "number" if kind in (int, "int", float, "float") else "value"
            raise FlagError(f"--{name} needs a {wanted}, got {value!r}") from None
    validate(flags)
    return flags


def validate(flags: ServerFlags) -> None:
    if not flags.version and not flags.model_config_file and not flags.model_base_path and not flags.remote_backend:
        raise FlagError(
            "Both server_options.model_base_path and server_options.model_config_file are empty! "
            "Pass --model_base_path=/abs/path/to/model (folder of numeric versions) or --model_config_file=FILE"
        )
    if flags.batching_parameters_file and not flags.enable_batching:
        raise FlagError(
            "server_options.batching_parameters_file is set without setting server_options.enable_batching to true."
        )
    for name in ("port", "rest_api_port"):
        value = getattr(flags, name)
        if not 0 <= value <= 65535:
            raise FlagError(f"--{name} must be between 0 and 65535 (got {value})")
    if flags.port == 0 and flags.rest_api_port == 0 and not flags.grpc_socket_path:
        raise FlagError("both --port and --rest_api_port are 0; enable at least one of gRPC or REST")
    for name in ("rest_api_max_body_bytes", "rest_api_max_connections", "rest_api_max_header_bytes",
                 "rest_api_max_headers", "rest_api_max_pipelined_requests", "grpc_max_receive_message_bytes",
                 "grpc_max_concurrent_streams", "request_read_timeout_seconds", "rest_api_idle_timeout_seconds",
                 "grpc_max_call_seconds"):
        if getattr(flags, name) <= 0:
            raise FlagError(f"--{name} must be > 0 (got {getattr(flags, name)}); it bounds what one client may hold")
    if flags.grpc_max_receive_message_bytes >= 2**31:
        raise FlagError(f"--grpc_max_receive_message_bytes must be below 2147483648 (gRPC's largest message), "
                        f"got {flags.grpc_max_receive_message_bytes}")
    for name in ("request_log_max_file_bytes", "request_log_max_files"):
        if getattr(flags, name) <= 0:
            raise FlagError(f"--{name} must be > 0 (got {getattr(flags, name)}); it bounds the request log on disk")
    if bool(flags.remote_backend_cert_file) != bool(flags.remote_backend_key_file):
        raise FlagError("--remote_backend_cert_file and --remote_backend_key_file go together (the client "
                        "certificate and its key); pass both or neither")
    if (flags.remote_backend_ca_file or flags.remote_backend_cert_file) and not flags.remote_backend:
        raise FlagError("--remote_backend_ca_file/--remote_backend_cert_file configure the connection to "
                        "--remote_backend; pass --remote_backend=host:port too, or drop them")
    validate_processes(flags)
    try:
        parse_channel_arguments(flags.grpc_channel_arguments, warn=False)
    except ChannelArgumentError as exc:
        raise FlagError(str(exc)) from None
    if flags.model_base_path and not flags.model_config_file and not os.path.isabs(flags.model_base_path) \
            and "://" not in flags.model_base_path:
        flags.model_base_path = os.path.abspath(flags.model_base_path)


def validate_processes(flags: ServerFlags) -> None:
    """Several workers must be able to share every listener they open."""
    if flags.server_processes < 1:
        raise FlagError(f"--server_processes must be at least 1 (got {flags.server_processes}); "
                        "1 serves from this process alone")
    if flags.server_processes == 1:
        return
    if flags.grpc_socket_path:
        raise FlagError(f"--grpc_socket_path cannot be shared by --server_processes={flags.server_processes} "
                        "workers (a Unix socket has one listener); drop it or use --server_processes=1")
    if not 0 <= flags.server_worker_index < flags.server_processes and flags.server_worker_index != -1:
        raise FlagError(f"--server_worker_index is internal (set by the parent of --server_processes); "
                        f"got {flags.server_worker_index} for {flags.server_processes} processes")


def usage() -> str:
    lines = ["usage: esteira serve [--flag=value ...]", "", "TF Serving flags (same meaning and defaults):"]
    for f in fields(ServerFlags):
        if f.name == "extra" or f.name in INTERNAL_FLAGS:
            continue
        if f.name == "host":
            lines += ["", "Esteira flags:"]
        lines.append(f"  --{f.name}={f.default!r:<12} {HELP.get(f.name, '')}")
    return "\n".join(lines)
