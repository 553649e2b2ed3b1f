"""Prometheus metrics: TF Serving's families rendered as TF Serving renders them, plus ``esteira_*``.

TF Serving's exporter writes names with ``:`` for ``/`` (``:tensorflow:serving:request_count``),
only ``# TYPE`` lines, int64 counters and upper-exclusive histogram buckets in microseconds; the
families here copy that so dashboards and alerts work unchanged against both servers. Esteira's own
families follow the Prometheus naming guide (seconds, bytes, ``_total``) with ``# HELP`` lines.
Label values are bounded: model names and versions come from the config, never from a request.
"""
from __future__ import annotations

import bisect
import os
import threading
import time
from typing import Callable, Iterable, Sequence

_ESCAPE = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{str(v).translate(_ESCAPE)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


def _g(value: float) -> str:
    """absl::StrCat(double): six significant digits, no trailing zeros."""
    return "%g" % value


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Family:
    kind = "untyped"

    def __init__(self, name: str, labelnames: Sequence[str], help_text: str = "", tf_style: bool = False) -> None:
        self.name = name
        self.labelnames = tuple(labelnames)
        self.help = help_text
        self.tf_style = tf_style
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        lines = [] if self.tf_style or not self.help else [f"# HELP {self.name} {self.help}"]
        return lines + [f"# TYPE {self.name} {self.kind}"]


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

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in items]


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

    def render(self) -> list[str]:
        with self._lock:
            items = dict(self._values)
        if self._callback is not None:
            items.update(self._callback())
        return self.header() + [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in sorted(items.items())]


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

    def count(self, labels: tuple[str, ...]) -> int:
        series = self._series.get(labels)
        return series[2] if series else 0

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, (list(v[0]), v[1], v[2])) for k, v in self._series.items())
        lines = self.header()
        fmt = _g if self.tf_style else repr
        for labels, (buckets, total, count) in items:
            running = 0
            for bound, hits in zip(self.bounds + [float("inf")], buckets):
                running += hits
                le = "+Inf" if bound == float("inf") else fmt(float(bound))
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, labels, 'le=' + chr(34) + le + chr(34))} {running}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, labels)} {_g(total) if self.tf_style else repr(total)}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, labels)} {count}")
        return lines


def exponential(start: float, factor: float, count: int) -> list[float]:
    """TF's ``Buckets::Exponential``: ``count`` finite limits start, start*factor, ..."""
    return [start * factor**i for i in range(count)]


SECONDS_BUCKETS = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
BYTES_BUCKETS = [64 * 4**i for i in range(10)]


class Registry:
    """Every metric the server exports, in TF Serving's family order (sorted by name)."""

    def __init__(self) -> None:
        self._families: list[_Family] = []
        tf = dict(tf_style=True)
        self.request_count = self._add(Counter(":tensorflow:serving:request_count", ["model_name", "status"], **tf))
        self.request_latency = self._add(Histogram(
            ":tensorflow:serving:request_latency", ["model_name", "API", "entrypoint"], exponential(10, 1.8, 33), **tf))
        self.runtime_latency = self._add(Histogram(
            ":tensorflow:serving:runtime_latency", ["model_name", "API", "runtime"], exponential(10, 1.8, 33), **tf))
        self.example_counts = self._add(Histogram(
            ":tensorflow:serving:request_example_counts", ["model"], exponential(1, 2, 15), **tf))
        self.example_count_total = self._add(Counter(":tensorflow:serving:request_example_count_total", ["model"], **tf))
        self.warmup_latency = self._add(Histogram(
            ":tensorflow:serving:model_warmup_latency", ["model_path", "status"], exponential(10, 1.8, 33), **tf))
        self.warmup_records = self._add(Counter(":tensorflow:serving:model_warmup_records_read", ["model_path", "status"], **tf))
        self.queuing_latency = self._add(Histogram(
            ":tensorflow:serving:batching_session:queuing_latency", ["thread_pool_name"], exponential(100, 1.2, 52), **tf))
        self.wrapped_run_count = self._add(Counter(":tensorflow:serving:batching_session:wrapped_run_count", [], **tf))
        self.input_batch_size = self._add(Histogram(
            ":tensorflow:serving:batching_session:input_batch_size", [], exponential(1, 2, 14), **tf))
        self.processed_batch_size = self._add(Histogram(
            ":tensorflow:serving:batching_session:processed_batch_size", [], exponential(1, 2, 14), **tf))
        self.padding_size = self._add(Histogram(
            ":tensorflow:serving:batching_session:padding_size", ["execution_batch_size"], exponential(1, 2, 14), **tf))
        self.load_attempt_count = self._add(Counter(":tensorflow:cc:saved_model:load_attempt_count", ["model_path", "status"], **tf))
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
        self.canary_routed = self._add(Counter(
            "esteira_canary_routed_total", ["model", "label"], "Requests without a version routed to a label."))
        self.cpu = self._add(Counter("process_cpu_seconds_total", [], "Total user and system CPU time spent in seconds."))
        self.rss = self._add(Gauge("process_resident_memory_bytes", [], "Resident memory size in bytes."))
        self.start_time = self._add(Gauge("process_start_time_seconds", [], "Start time of the process since unix epoch in seconds."))
        self.start_time.set((), time.time())
        self._feature_histograms: dict[tuple[str, str, str], Histogram] = {}
        self._drift_sources: dict[tuple[str, str], object] = {}

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

    def _drift_lines(self) -> list[str]:
        from serving.drift import psi

        hist = self.feature_value.header()
        gauge = self.drift.header()
        for (model, version), monitor in sorted(self._drift_sources.items()):
            for feature, (ref, observed, total) in sorted(monitor.snapshot().items()):  # type: ignore[attr-defined]
                labels = (model, version, feature)
                running = 0
                for bound, hits in zip(list(ref.boundaries) + [float("inf")], observed):
                    running += int(hits)
                    le = "+Inf" if bound == float("inf") else repr(float(bound))
                    hist.append(f"esteira_input_feature_value_bucket{_labels(self.feature_value.labelnames, labels, 'le=' + chr(34) + le + chr(34))} {running}")
                hist.append(f"esteira_input_feature_value_sum{_labels(self.feature_value.labelnames, labels)} {repr(total)}")
                hist.append(f"esteira_input_feature_value_count{_labels(self.feature_value.labelnames, labels)} {running}")
                gauge.append(f"esteira_feature_drift_psi{_labels(self.drift.labelnames, labels)} {psi(ref.shares, observed):.6f}")
        return hist + gauge

    # ---- exposition --------------------------------------------------------------------------

    def _update_process(self) -> None:
        times = os.times()
        with self.cpu._lock:
            self.cpu._values[()] = times.user + times.system
        try:
            with open("/proc/self/statm") as handle:
                self.rss.set((), int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
        except OSError:
            pass

    def render(self) -> bytes:
        self._update_process()
        lines: list[str] = []
        for family in sorted(self._families, key=lambda f: f.name):
            if family is self.feature_value:
                continue
            if family is self.drift:
                lines.extend(self._drift_lines())
                continue
            lines.extend(family.render())
        return ("\n".join(lines) + "\n").encode()
