"""TF Serving's text-format configuration files: models.config, batching parameters, monitoring.

``ModelServerConfig`` comes from tensorflow-serving-api; ``BatchingParameters``, ``MonitoringConfig``
and ``SSLConfig`` are not shipped there, so their descriptors are declared here with the same
package, names and field numbers as TF Serving's .proto files, and parse the same files.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from errors import ConfigError  # the project's one configuration error, raised and re-exported here


def _build_messages() -> tuple[type, type, type]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="esteira/serving_config.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )

    def add(message: descriptor_pb2.DescriptorProto, name: str, number: int, type_: int, type_name: str = "",
            label: int = F.LABEL_OPTIONAL) -> None:
        added = message.field.add(name=name, number=number, type=type_, label=label, json_name=name)
        if type_name:
            added.type_name = type_name

    batching = fdp.message_type.add(name="BatchingParameters")
    add(batching, "max_batch_size", 1, F.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    add(batching, "batch_timeout_micros", 2, F.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    add(batching, "max_enqueued_batches", 3, F.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    add(batching, "num_batch_threads", 4, F.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    add(batching, "thread_pool_name", 5, F.TYPE_MESSAGE, ".google.protobuf.StringValue")
    add(batching, "allowed_batch_sizes", 6, F.TYPE_INT64, label=F.LABEL_REPEATED)
    add(batching, "pad_variable_length_inputs", 7, F.TYPE_BOOL)
    add(batching, "enable_large_batch_splitting", 8, F.TYPE_MESSAGE, ".google.protobuf.BoolValue")
    add(batching, "max_execution_batch_size", 9, F.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    prometheus = fdp.message_type.add(name="PrometheusConfig")
    add(prometheus, "enable", 1, F.TYPE_BOOL)
    add(prometheus, "path", 2, F.TYPE_STRING)
    monitoring = fdp.message_type.add(name="MonitoringConfig")
    add(monitoring, "prometheus_config", 1, F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")
    ssl = fdp.message_type.add(name="SSLConfig")  # config/ssl_config.proto: PEM contents, not file names
    add(ssl, "server_key", 1, F.TYPE_STRING)
    add(ssl, "server_cert", 2, F.TYPE_STRING)
    add(ssl, "custom_ca", 3, F.TYPE_STRING)
    add(ssl, "client_verify", 4, F.TYPE_BOOL)
    pool.Add(fdp)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
                 for name in ("BatchingParameters", "MonitoringConfig", "SSLConfig"))


BatchingParametersProto, MonitoringConfigProto, SSLConfigProto = _build_messages()
ModelServerConfig = model_server_config_pb2.ModelServerConfig
DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"


def _parse_text(path: str | os.PathLike[str], message: Any, what: str) -> None:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}; "
                          "check the path passed on the command line") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        name = type(message).DESCRIPTOR.full_name
        raise ConfigError(f"Invalid protobuf file: '{path}': Error parsing text-format {name}: {exc}") from None


def read_model_config(path: str | os.PathLike[str]) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    _parse_text(path, config, "model config file")
    validate_model_config(config)
    return config


def validate_model_config(config: model_server_config_pb2.ModelServerConfig) -> None:
    """The checks ServerCore makes before any model is touched, with TF Serving's messages."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ConfigError("ModelServer does not yet support custom model config.")
    seen = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise ConfigError("A model in model_config_list has no name; add name: \"...\" to every config { }")
        if model.name in seen:
            raise ConfigError(f"Illegal to list model {model.name} multiple times in config list")
        seen.add(model.name)
        if not model.base_path or not (os.path.isabs(model.base_path) or "://" in model.base_path):
            raise ConfigError(f"Expected model {model.name} to have an absolute path or URI; "
                              f"got base_path()={model.base_path}")
        if model.model_platform and model.model_platform != "tensorflow":
            raise ConfigError(
                f"Model {model.name} has model_platform \"{model.model_platform}\"; "
                "this server serves \"tensorflow\" only"
            )


def write_model_config(config: model_server_config_pb2.ModelServerConfig, path: str | os.PathLike[str]) -> None:
    """Atomic rewrite, so a server polling the file never reads half of it."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text_format.MessageToString(config))
    os.replace(tmp, target)


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name, model.base_path, model.model_platform = name, os.path.abspath(base_path), "tensorflow"
    return config


@dataclass(frozen=True)
class BatchingParameters:
    """Batching options with TF Serving's defaults for unset fields."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None


def read_batching_parameters(path: str | os.PathLike[str] | None) -> BatchingParameters:
    if not path:
        return BatchingParameters(thread_pool_name="model_server_batch_threads")
    proto = BatchingParametersProto()
    _parse_text(path, proto, "batching parameters file")
    params = BatchingParameters(
        max_batch_size=proto.max_batch_size.value if proto.HasField("max_batch_size") else 1000,
        batch_timeout_micros=proto.batch_timeout_micros.value if proto.HasField("batch_timeout_micros") else 0,
        max_enqueued_batches=proto.max_enqueued_batches.value if proto.HasField("max_enqueued_batches") else 10,
        num_batch_threads=(proto.num_batch_threads.value if proto.HasField("num_batch_threads")
                           else (os.cpu_count() or 1)),
        thread_pool_name=proto.thread_pool_name.value if proto.HasField("thread_pool_name") else "batch_threads",
        allowed_batch_sizes=tuple(proto.allowed_batch_sizes),
        pad_variable_length_inputs=proto.pad_variable_length_inputs,
        enable_large_batch_splitting=proto.enable_large_batch_splitting.value,
        max_execution_batch_size=(proto.max_execution_batch_size.value
                                  if proto.HasField("max_execution_batch_size") else None),
    )
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        if getattr(params, name) <= 0:
            raise ConfigError(f"{path}: {name} must be > 0 (got {getattr(params, name)})")
    if params.batch_timeout_micros < 0:
        raise ConfigError(f"{path}: batch_timeout_micros must be >= 0")
    sizes = params.allowed_batch_sizes
    if sizes:
        if any(b <= a for a, b in itertools.pairwise(sizes)) or sizes[0] <= 0:
            raise ConfigError(f"{path}: allowed_batch_sizes must be positive and strictly increasing")
        if sizes[-1] != params.max_batch_size:
            raise ConfigError(
                f"Last entry in allowed_batch_sizes must match max_batch_size; last entry was {sizes[-1]}; "
                f"expected {params.max_batch_size}"
            )
    return params


@dataclass(frozen=True)
class MonitoringConfig:
    enable: bool = False
    path: str = DEFAULT_METRICS_PATH


def read_monitoring_config(path: str | os.PathLike[str] | None) -> MonitoringConfig:
    if not path:
        return MonitoringConfig()
    proto = MonitoringConfigProto()
    _parse_text(path, proto, "monitoring config file")
    prometheus = proto.prometheus_config
    metrics_path = prometheus.path or DEFAULT_METRICS_PATH
    if not metrics_path.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config.path must start with '/' (got {metrics_path!r})")
    return MonitoringConfig(enable=prometheus.enable, path=metrics_path)


@dataclass(frozen=True)
class SslConfig:
    """TF Serving's ``--ssl_config_file``: the server's key and certificate chain, the CA that signs client
    certificates, and whether a client must present one (PEM text, as TF Serving's SSLConfig holds it)."""

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False


def read_ssl_config(path: str | os.PathLike[str]) -> SslConfig:
    proto = SSLConfigProto()
    _parse_text(path, proto, "SSL config file")
    for name in ("server_key", "server_cert"):
        if "-----BEGIN" not in getattr(proto, name):
            raise ConfigError(f"{path}: {name} must hold the PEM text itself (TF Serving's SSLConfig), "
                              f'e.g. {name}: "-----BEGIN ...-----\\n...\\n-----END ...-----\\n"; '
                              "it is empty or not PEM")
    if proto.client_verify and "-----BEGIN CERTIFICATE" not in proto.custom_ca:
        raise ConfigError(f"{path}: client_verify: true needs custom_ca, the PEM certificate(s) of the CA that "
                          "signs client certificates")
    return SslConfig(proto.server_key, proto.server_cert, proto.custom_ca, proto.client_verify)
