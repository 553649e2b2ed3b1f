"""Request logging in TF Serving's format: each model's ``logging_config`` in the model config file
samples Predict, Classify, Regress and MultiInference calls into ``PredictionLog`` records (the request,
the response and ``log_metadata``) in TFRecord files, the format of TF Serving's warm-up file, so a log
can be read with ``tf.data.TFRecordDataset`` and replayed.

Off unless a model's config has a ``logging_config``. Requests carry personal data: what is logged is the
whole request and response, values included (serving/README.md, "Request logging").

Files are ``<filename_prefix>.<UTC start>.<pid>.<n>.tfrecord``; one is closed once it holds
``max_file_bytes`` and a new one begun, and only the newest ``max_files`` of a prefix are kept. Worker
``i`` of ``--server_processes`` writes ``<filename_prefix>.w<i>.<UTC start>.<pid>.<n>.tfrecord`` and
keeps the newest ``max_files`` of its own, never deleting a file another worker is writing. Records
are built and written on one writer thread; when it falls behind (``QUEUE_RECORDS`` waiting), a sampled
request is dropped instead of slowing the request path, and counted
(``:tensorflow:serving:request_log_count{status_code="RESOURCE_EXHAUSTED"}``; written ones ``OK``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import logging_config_pb2, model_server_config_pb2

from errors import EsteiraError
from serving.observability.metrics import Registry

log = logging.getLogger("serving")

FILE_COLLECTOR = "file"
QUEUE_RECORDS = 10_000
Build = Callable[[], prediction_log_pb2.PredictionLog]


class RequestLogError(EsteiraError, ValueError):
    """A ``logging_config`` this server cannot follow; the message names the model, the field and the fix."""


@dataclass(frozen=True)
class LogSettings:
    """One model's logging_config, checked."""

    model: str
    sampling_rate: float
    filename_prefix: str
    config: logging_config_pb2.LoggingConfig

    @classmethod
    def of(cls, model: model_server_config_pb2.ModelConfig) -> LogSettings | None:
        if not model.HasField("logging_config"):
            return None
        config = model.logging_config
        collector = config.log_collector_config
        where = f"model {model.name}: logging_config"
        if collector.type != FILE_COLLECTOR:
            raise RequestLogError(f'{where}.log_collector_config.type is "{collector.type}"; this server writes '
                                  f'TFRecord files: set type: "{FILE_COLLECTOR}" and filename_prefix')
        if not collector.filename_prefix or collector.filename_prefix.endswith("/"):
            raise RequestLogError(f"{where}.log_collector_config.filename_prefix must name files, e.g. "
                                  f'"/var/log/esteira/{model.name}" (got "{collector.filename_prefix}")')
        rate = config.sampling_config.sampling_rate
        if not 0.0 <= rate <= 1.0:
            raise RequestLogError(f"{where}.sampling_config.sampling_rate must be between 0 and 1 (got {rate})")
        return cls(model.name, rate, collector.filename_prefix, config)


class _RotatingFile:
    """TFRecord files of one prefix, bounded in size and number."""

    def __init__(self, prefix: str, max_file_bytes: int, max_files: int, worker: str = "") -> None:
        self.prefix, self.max_file_bytes, self.max_files = prefix, max_file_bytes, max_files
        self.stem = f"{prefix}.{worker}" if worker else prefix  # what this process's file names begin with
        Path(prefix).parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        self._writer: Any = None  # tf.io.TFRecordWriter of the file being filled
        self._bytes = 0
        self._sequence = 0
        self._started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())

    def write(self, record: bytes) -> None:
        import tensorflow as tf

        size = len(record) + 16  # TFRecord framing: length, its CRC, the data's CRC
        if self._writer is not None and self._bytes + size > self.max_file_bytes:
            self.close()
        if self._writer is None:
            self._sequence += 1
            path = f"{self.stem}.{self._started}.{os.getpid()}.{self._sequence:06d}.tfrecord"
            self._writer = tf.io.TFRecordWriter(path)
            os.chmod(path, 0o640)  # requests hold personal data: owner and group only
            self._bytes = 0
            self._prune()
        self._writer.write(record)
        self._bytes += size

    def _prune(self) -> None:
        folder, stem = Path(self.stem).parent, Path(self.stem).name
        files = sorted(folder.glob(f"{stem}.*.tfrecord"))  # names sort by start time, then number
        for old in files[: max(len(files) - self.max_files, 0)]:
            old.unlink(missing_ok=True)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class RequestLog:
    """Every model's request log; ``submit`` is called on the request path after a successful call."""

    def __init__(self, metrics: Registry, *, max_file_bytes: int = 64 * 1024 * 1024, max_files: int = 10,
                 saved_model_tags: Iterable[str] = ("serve",), worker: str = "") -> None:
        """``worker``: ``w<i>`` in a worker of --server_processes (its own files), else empty."""
        self.metrics = metrics
        self.worker = worker
        self.max_file_bytes, self.max_files = max_file_bytes, max_files
        self.tags = list(saved_model_tags)
        self.settings: dict[str, LogSettings] = {}
        self._files: dict[str, _RotatingFile] = {}
        self._queue: queue.Queue = queue.Queue(QUEUE_RECORDS)
        self._thread: threading.Thread | None = None

    @staticmethod
    def parse(config: model_server_config_pb2.ModelServerConfig) -> dict[str, LogSettings]:
        """Every model's checked logging_config (RequestLogError on the first bad one)."""
        found = {model.name: LogSettings.of(model) for model in config.model_config_list.config}
        return {name: settings for name, settings in found.items() if settings is not None}

    def configure(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        self.apply(self.parse(config))

    def apply(self, settings: dict[str, LogSettings]) -> None:
        """Follow a (re)loaded model config: models without logging_config log nothing."""
        self.settings = settings
        if settings and self._thread is None:
            self._thread = threading.Thread(target=self._write_forever, name="request-log", daemon=True)
            self._thread.start()

    def wants(self, model: str) -> LogSettings | None:
        """The model's settings when this request is sampled, else None (cheap: no record is built)."""
        found = self.settings.get(model)
        if found is None or found.sampling_rate <= 0 or random.random() >= found.sampling_rate:
            return None
        return found

    def submit(self, settings: LogSettings, version: int, signature: str | None, request_id: str,
               build: Build) -> None:
        """Queue one record; ``build`` makes the PredictionLog's request and response on the writer thread.
        ``signature`` None: several (MultiInference names them in its request)."""
        try:
            self._queue.put_nowait((settings, version, signature, request_id, time.time(), build))
        except queue.Full:
            self.metrics.request_log_count.inc((settings.model, "RESOURCE_EXHAUSTED"))

    def _write_forever(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            self._write(*item)
            if self._queue.empty():
                self._flush_all()  # whole records on disk whenever the writer is idle
        for file in self._files.values():
            file.close()

    def _flush_all(self) -> None:
        """A file that cannot be flushed (a full disk) is dropped, so the writer lives and the next record starts
        a new file; its buffered records are lost and said so."""
        for prefix, file in list(self._files.items()):
            try:
                file.flush()
            except Exception as exc:  # noqa: BLE001 - tf.errors.ResourceExhaustedError on ENOSPC, among others
                log.error("request log %s: could not flush buffered records, they are lost (%s); the next record "
                          "starts a new file", prefix, exc)
                del self._files[prefix]
                with contextlib.suppress(Exception):
                    file.close()

    def _write(self, settings: LogSettings, version: int, signature: str | None, request_id: str, at: float,
               build: Build) -> None:
        try:
            record = build()
            metadata = record.log_metadata
            metadata.model_spec.name = settings.model
            metadata.model_spec.version.value = version
            if signature is not None:
                metadata.model_spec.signature_name = signature or "serving_default"
            metadata.sampling_config.CopyFrom(settings.config.sampling_config)
            metadata.saved_model_tags.extend(self.tags)
            metadata.timestamp_secs = int(at)
            metadata.request_origin = request_id  # LogMetadata has no request-id field; this is where it goes
            file = self._files.get(settings.filename_prefix)
            if file is None:
                file = self._files[settings.filename_prefix] = _RotatingFile(
                    settings.filename_prefix, self.max_file_bytes, self.max_files, self.worker)
            file.write(record.SerializeToString())
        except Exception as exc:  # noqa: BLE001 - a full disk or a bad record must not stop the writer
            self.metrics.request_log_count.inc((settings.model, "INTERNAL"))
            log.error("request log for model %s: could not write a record (%s)", settings.model, exc)
            return
        self.metrics.request_log_count.inc((settings.model, "OK"))

    def close(self) -> None:
        """Write what is queued, then close the files."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
