"""Prometheus metrics: TF Serving's families rendered as TF Serving renders them, plus ``esteira_*``.

TF Serving's exporter writes names with ``:`` for ``/`` (``:tensorflow:serving:request_count``) and
upper-exclusive histogram buckets in microseconds with ``le`` values like ``10`` and ``18``; the sample
names and buckets here copy that so dashboards and alerts work unchanged against both servers.
prometheus_client writes the exposition (it adds ``# HELP`` lines and, for counters, names the
``# TYPE`` line ``<name>_total``; the samples keep TF Serving's names). Esteira's own families follow
the Prometheus naming guide (seconds, bytes, ``_total``). Label values are bounded: model names and
versions come from the config, never from a request.
"""
from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric

from serving.observability.build_info import build_labels

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _g(value: float) -> str:
    """absl::StrCat(double): six significant digits, no trailing zeros (TF Serving's ``le`` values)."""
    return f"{value:g}"


class _Family:
    """One metric family kept as plain dicts keyed by label tuples: cheap on the request path; the
    collector turns them into prometheus_client families only when Prometheus scrapes."""

    kind = "untyped"

    def __init__(self, name: str, labelnames: Sequence[str], help_text: str = "", tf_style: bool = False) -> None:
        self.name = name
        self.labelnames = tuple(labelnames)
        self.help = help_text
        self.tf_style = tf_style
        self._lock = threading.Lock()

    def family(self) -> Metric:
        name = self.name
        if self.kind == "counter" and name.endswith("_total"):  # prometheus_client appends it again
            name = name[: -len("_total")]
        return Metric(name, self.help, self.kind)

    def collect(self) -> Metric:
        raise NotImplementedError  # each kind writes its own samples

    def labels(self, values: Sequence[str], **extra: str) -> dict[str, str]:
        labels = dict(zip(self.labelnames, map(str, values), strict=False))  # extra labels come as keywords
        labels.update(extra)
        return labels


class Counter(_Family):
    kind = "counter"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, labels: tuple[str, ...] = ()) -> float:
        return self._values.get(labels, 0.0)

    def collect(self) -> Metric:
        with self._lock:
            items = sorted(self._values.items())
        family = self.family()
        for key, value in items:
            family.add_sample(self.name, self.labels(key), value)
        return family


class Gauge(_Family):
    kind = "gauge"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._values: dict[tuple[str, ...], float] = {}
        self._callback: Callable[[], Iterable[tuple[tuple[str, ...], float]]] | None = None

    def set(self, labels: tuple[str, ...], value: float) -> None:
        with self._lock:
            self._values[labels] = value

    def remove_matching(self, prefix: tuple[str, ...]) -> None:
        with self._lock:
            for key in [k for k in self._values if k[: len(prefix)] == prefix]:
                del self._values[key]

    def set_function(self, callback: Callable[[], Iterable[tuple[tuple[str, ...], float]]]) -> None:
        self._callback = callback

    def collect(self) -> Metric:
        with self._lock:
            items = dict(self._values)
        if self._callback is not None:
            items.update(self._callback())
        family = self.family()
        for key, value in sorted(items.items()):
            family.add_sample(self.name, self.labels(key), value)
        return family


class Histogram(_Family):
    """``tf_style`` buckets are upper-exclusive (TF's), else Prometheus' upper-inclusive ``le``."""

    kind = "histogram"

    def __init__(self, name: str, labelnames: Sequence[str], buckets: Sequence[float], help_text: str = "",
                 tf_style: bool = False) -> None:
        super().__init__(name, labelnames, help_text, tf_style)
        self.bounds = list(buckets)
        self._series: dict[tuple[str, ...], list] = {}
        self._find = bisect.bisect_right if tf_style else bisect.bisect_left

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        index = self._find(self.bounds, value)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [[0] * (len(self.bounds) + 1), 0.0, 0]
            series[0][index] += 1
            series[1] += value
            series[2] += 1

    def observe_many(self, labels: tuple[str, ...], values: np.ndarray | list[float]) -> None:
        """A request's rows in one call: bisect for a few plain floats, numpy for arrays; NaN skipped
        (it would make ``_sum`` NaN for good)."""
        if isinstance(values, list):
            values = [value for value in values if value == value]
            indices = [self._find(self.bounds, value) for value in values]
            hits = [(index, 1) for index in indices]
            total = float(sum(values))
        else:
            values = values[np.isfinite(values)] if not np.isfinite(values).all() else values
            side: Literal["left", "right"] = "right" if self.tf_style else "left"
            found = np.bincount(np.searchsorted(self.bounds, values, side=side), minlength=len(self.bounds) + 1)
            hits = [(index, count) for index, count in enumerate(found.tolist()) if count]
            total = float(values.sum())
        if not len(values):
            return
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [[0] * (len(self.bounds) + 1), 0.0, 0]
            for index, count in hits:
                series[0][index] += count
            series[1] += total
            series[2] += len(values)

    def count(self, labels: tuple[str, ...]) -> int:
        series = self._series.get(labels)
        return series[2] if series else 0

    def collect(self) -> Metric:
        with self._lock:
            items = sorted((k, (list(v[0]), v[1])) for k, v in self._series.items())
        family = self.family()
        for labels, (buckets, total) in items:
            add_buckets(family, self, labels, self.bounds, buckets, total, _g if self.tf_style else repr)
        return family


def add_buckets(family: Metric, owner: _Family, labels: Sequence[str], bounds: Sequence[float],
                hits: Iterable[float], total: float, fmt: Callable[[float], str] = repr) -> None:
    """Cumulative ``_bucket`` samples, ``_sum`` and ``_count`` of one histogram series."""
    running = 0
    for bound, count in zip([*bounds, float("inf")], hits, strict=False):
        running += int(count)
        le = "+Inf" if bound == float("inf") else fmt(float(bound))
        family.add_sample(owner.name + "_bucket", owner.labels(labels, le=le), running)
    family.add_sample(owner.name + "_sum", owner.labels(labels), total)
    family.add_sample(owner.name + "_count", owner.labels(labels), running)


def exponential(start: float, factor: float, count: int) -> list[float]:
    """TF's ``Buckets::Exponential``: ``count`` finite limits start, start*factor, ..."""
    return [start * factor**i for i in range(count)]


SECONDS_BUCKETS = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
BYTES_BUCKETS = [64 * 4**i for i in range(10)]
SCORE_BUCKETS = [round(0.05 * i, 2) for i in range(1, 21)]


def os_threads() -> Iterable[tuple[tuple[str, ...], float]]:
    """OS threads of this process (TensorFlow's and gRPC's included), where /proc tells."""
    try:
        return [((), float(len(os.listdir("/proc/self/task"))))]
    except OSError:
        return []


class Registry:
    """Every metric the server exports, in TF Serving's family order (sorted by name)."""

    def __init__(self) -> None:
        self._families: list[_Family] = []
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)
        ProcessCollector(registry=self._registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        tf: dict[str, Any] = {"tf_style": True}
        # TF Serving's labels, plus the version that answered ("" before one was resolved): additive, so
        # queries written for TF Serving work unchanged and dashboards can split by version.
        self.request_count = self._add(Counter(
            ":tensorflow:serving:request_count", ["model_name", "status", "version"], **tf))
        self.request_latency = self._add(Histogram(
            ":tensorflow:serving:request_latency", ["model_name", "API", "entrypoint", "version"],
            exponential(10, 1.8, 33), **tf))
        self.runtime_latency = self._add(Histogram(
            ":tensorflow:serving:runtime_latency", ["model_name", "API", "runtime"], exponential(10, 1.8, 33), **tf))
        self.example_counts = self._add(Histogram(
            ":tensorflow:serving:request_example_counts", ["model"], exponential(1, 2, 15), **tf))
        self.example_count_total = self._add(Counter(
            ":tensorflow:serving:request_example_count_total", ["model"], **tf))
        self.warmup_latency = self._add(Histogram(
            ":tensorflow:serving:model_warmup_latency", ["model_path", "status"], exponential(10, 1.8, 33), **tf))
        self.warmup_records = self._add(Counter(
            ":tensorflow:serving:model_warmup_records_read", ["model_path", "status"], **tf))
        self.queuing_latency = self._add(Histogram(
            ":tensorflow:serving:batching_session:queuing_latency", ["thread_pool_name"],
            exponential(100, 1.2, 52), **tf))
        self.wrapped_run_count = self._add(Counter(":tensorflow:serving:batching_session:wrapped_run_count", [], **tf))
        self.input_batch_size = self._add(Histogram(
            ":tensorflow:serving:batching_session:input_batch_size", [], exponential(1, 2, 14), **tf))
        self.processed_batch_size = self._add(Histogram(
            ":tensorflow:serving:batching_session:processed_batch_size", [], exponential(1, 2, 14), **tf))
        self.padding_size = self._add(Histogram(
            ":tensorflow:serving:batching_session:padding_size", ["execution_batch_size"], exponential(1, 2, 14), **tf))
        self.request_log_count = self._add(Counter(
            ":tensorflow:serving:request_log_count", ["model_name", "status_code"], **tf))
        self.load_attempt_count = self._add(Counter(
            ":tensorflow:cc:saved_model:load_attempt_count", ["model_path", "status"], **tf))
        self.load_latency = self._add(Counter(":tensorflow:cc:saved_model:load_latency", ["model_path"], **tf))

        self.duration = self._add(Histogram(
            "esteira_request_duration_seconds", ["model", "version", "api", "entrypoint"], SECONDS_BUCKETS,
            "Server-side latency of inference and model API calls, per model version and API."))
        self.requests = self._add(Counter(
            "esteira_requests_total", ["model", "version", "api", "entrypoint", "code"],
            "Requests by model version, API, entrypoint and status code."))
        self.request_size = self._add(Histogram(
            "esteira_request_size_bytes", ["model", "api", "entrypoint"], BYTES_BUCKETS, "Request body size."))
        self.response_size = self._add(Histogram(
            "esteira_response_size_bytes", ["model", "api", "entrypoint"], BYTES_BUCKETS, "Response body size."))
        self.predictions = self._add(Counter(
            "esteira_predictions_total", ["model", "version", "class"],
            "Predicted rows per class (argmax, or 0/1 at 0.5 for a single probability)."))
        self.feature_value = self._add(Histogram(
            "esteira_input_feature_value", ["model", "version", "feature"], [],
            "Served input values per feature, in the buckets of the version's reference histogram."))
        self.drift = self._add(Gauge(
            "esteira_feature_drift_psi", ["model", "version", "feature"],
            "Population Stability Index of served inputs against the training reference of the version."))
        self.model_state = self._add(Gauge(
            "esteira_model_version_available", ["model", "version"], "1 while the version serves, 0 otherwise."))
        self.load_seconds = self._add(Gauge(
            "esteira_model_load_seconds", ["model", "version"], "Time from load start to AVAILABLE (incl. warmup)."))
        self.batch_rejections = self._add(Counter(
            "esteira_batch_queue_rejections_total", ["model"], "Requests refused because the batch queue was full."))
        self.auth_failures = self._add(Counter(
            "esteira_auth_failures_total", ["entrypoint"], "Requests refused for a missing or invalid bearer token."))
        self.audit_write_failures = self._add(Counter(
            "esteira_audit_write_failures_total", [], "Access audit lines that could not be written (e.g. disk full)."))
        self.audit_writable = self._add(Gauge(
            "esteira_audit_log_writable", [], "1 while the last access audit line was written, 0 after a failure."))
        self.config_reloads = self._add(Counter(
            "esteira_model_config_reloads_total", ["result"],
            "Polled --model_config_file changes applied (ok) or refused, the previous config kept (error)."))
        self.canary_routed = self._add(Counter(
            "esteira_canary_routed_total", ["model", "label"], "Requests without a version routed to a label."))
        self.prediction_score = self._add(Histogram(
            "esteira_prediction_score", ["model", "version"], SCORE_BUCKETS,
            "Score of each predicted row: the probability of a single output, else the top class's score."))
        self.version_labels = self._add(Gauge(
            "esteira_model_version_label_info", ["model", "version", "label"],
            "1 for the version each version label (stable, canary, ...) points at."))
        self.reference_share = self._add(Gauge(
            "esteira_input_feature_reference_share", ["model", "version", "feature", "le"],
            "Training reference histogram of a version as cumulative shares on esteira_input_feature_value's bounds."))
        self.feedback = self._add(Counter(
            "esteira_feedback_total", ["model", "version", "true_class", "predicted_class"],
            "Labelled rows joined to the prediction they label (version that answered, class predicted)."))
        self.feedback_unmatched = self._add(Counter(
            "esteira_feedback_unmatched_total", ["reason"],
            "Labels not joined: unknown, expired or evicted id, duplicate, wrong model, row or label out of range."))
        self.feedback_memory_evictions = self._add(Counter(
            "esteira_feedback_memory_evictions_total", ["reason"],
            "Remembered predictions forgotten before any label: expired (TTL) or evicted (max entries or bytes)."))
        self.feedback_memory_entries = self._add(Gauge(
            "esteira_feedback_memory_entries", [], "Predictions remembered for feedback."))
        self.feedback_memory_bytes = self._add(Gauge(
            "esteira_feedback_memory_bytes", [],
            "Bytes the remembered predictions hold, inputs kept for a review included (--feedback_max_bytes)."))
        self.build_info = self._add(Gauge(
            "esteira_build_info", ["version", "git_commit", "tensorflow_version"],
            "1, labelled with the Esteira release, the git commit and the TensorFlow release this server runs."))
        self.build_info.set(build_labels(), 1.0)
        self.threads = self._add(Gauge("process_threads", [], "OS threads of the server process."))
        self.threads.set_function(os_threads)
        self._feature_histograms: dict[tuple[str, str, str], Histogram] = {}
        self._drift_sources: dict[tuple[str, str], object] = {}
        self.shared: Any = None  # SharedMetrics of a --server_processes worker: scrapes show every worker

    def share(self, directory: str, pid: int | None = None) -> Any:
        """Copy this process's samples to ``directory`` and answer scrapes with every worker's sum there
        (``serving.observability.multiprocess``); call ``start()`` on the result."""
        from serving.observability.multiprocess import SharedMetrics

        self.shared = SharedMetrics(self._registry.collect, directory, pid)
        return self.shared

    def _add(self, family):  # type: ignore[no-untyped-def]
        self._families.append(family)
        return family

    # ---- drift -------------------------------------------------------------------------------

    def track_drift(self, model: str, version: str, monitor: object | None) -> None:
        """Export the monitor's histograms and PSI while the version serves (None stops it)."""
        if monitor is None:
            self._drift_sources.pop((model, version), None)
        else:
            self._drift_sources[(model, version)] = monitor

    def _drift_families(self) -> tuple[Metric, Metric, Metric]:
        from serving.observability.drift import format_boundary, psi

        hist, gauge, shares = self.feature_value.family(), self.drift.family(), self.reference_share.family()
        for (model, version), monitor in sorted(self._drift_sources.items()):
            for feature, (ref, observed, total) in sorted(monitor.snapshot().items()):  # type: ignore[attr-defined]
                labels = (model, version, feature)
                add_buckets(hist, self.feature_value, labels, ref.boundaries, observed, float(total))
                gauge.add_sample(self.drift.name, self.drift.labels(labels), round(psi(ref.shares, observed), 6))
                cumulative = np.cumsum(ref.shares)
                for bound, share in zip([*ref.boundaries, float("inf")], cumulative.tolist(), strict=False):
                    shares.add_sample(self.reference_share.name,
                                      self.reference_share.labels(labels, le=format_boundary(bound)),
                                      round(min(share, 1.0), 9))
        return hist, gauge, shares

    # ---- exposition --------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's collector protocol: every family, in name order as TF Serving lists them."""
        for family in sorted(self._families, key=lambda f: f.name):
            if family is self.feature_value or family is self.reference_share:
                continue
            if family is self.drift:
                yield from self._drift_families()
                continue
            yield family.collect()

    def render(self) -> bytes:
        """The text exposition format, written by prometheus_client; every worker's sum when shared."""
        if self.shared is not None:
            return self.shared.render()
        return generate_latest(self._registry)
