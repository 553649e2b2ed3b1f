"""The metrics of every worker of ``--server_processes`` as one exposition, whichever worker is scraped.

Each worker keeps its families as with one process (plain dicts, cheap on the request path) and copies
their samples, on a thread of its own, every ``FLUSH_SECONDS`` and on each scrape it answers, into its
own files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's ``MmapedDict`` files and its naming:
``counter_<pid>.db`` for counters and histograms, ``gauge_liveall_<pid>.db`` for gauges). The worker
answering a scrape adds every file up: counters and histogram buckets, ``_sum`` and ``_count`` are summed
over all workers, including those that died (their files stay, so a total never goes back), gauges over
the live ones only (``mark_process_dead`` removes a dead worker's gauge file) with the rule of
``GAUGE_RULES``, and the PSI of each feature is computed again from the summed histogram.

prometheus_client's own ``MultiProcessCollector`` is not used to merge: it rewrites every ``le`` through
``float`` (TF Serving's ``le="10"`` would become ``"10.0"``); samples are kept here with the label strings
they were written with, so names and ``le`` values are TF Serving's, as with one process.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import mark_process_dead

log = logging.getLogger("serving")

FLUSH_SECONDS = 1.0  # how stale another worker's samples may be in a scrape
PSI = "esteira_feature_drift_psi"
FEATURE_VALUE = "esteira_input_feature_value"
REFERENCE_SHARE = "esteira_input_feature_reference_share"
# How a gauge of several live workers becomes one value (sum when not named): a state every worker
# must hold is their minimum, a fact they all share their maximum.
GAUGE_RULES = {
    "esteira_model_version_available": "min",  # 1 only when every worker serving the version has it AVAILABLE
    "esteira_audit_log_writable": "min",  # 0 as soon as one worker cannot write its audit log
    "esteira_model_load_seconds": "max",
    "esteira_model_version_label_info": "max",
    REFERENCE_SHARE: "max",  # the same training reference in every worker
    "esteira_build_info": "max",
    "process_start_time_seconds": "min",  # the oldest worker
    "process_max_fds": "max",
    PSI: "psi",  # computed again from the summed histogram and the reference
    "esteira_metrics_copy_seconds": "max",
}
COPY_SECONDS = Metric("esteira_metrics_copy_seconds", "CPU time the last copy of a worker's samples to the "
                      "shared files took (the slowest worker's); the copy runs beside the request path, every second.",
                      "gauge")
GAUGE_KINDS = ("gauge", "info", "stateset")


def clean(directory: str) -> None:
    """Remove the samples a previous run left (before any worker starts): they would be added to this one's."""
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)


def worker_died(directory: str, pid: int) -> None:
    """A worker is gone: its gauges leave the sums; its counters stay in them."""
    mark_process_dead(pid, directory)


class SharedMetrics:
    """This worker's samples in its mmap files, and the sum of every worker's."""

    def __init__(self, collect: Callable[[], Iterable[Metric]], directory: str, pid: int | None = None) -> None:
        """``pid``: whose files these are (this process's unless told)."""
        self._collect = collect
        self.directory = directory
        self.pid = pid = os.getpid() if pid is None else pid
        self._files = {"counter": MmapedDict(os.path.join(directory, f"counter_{pid}.db")),
                       "gauge": MmapedDict(os.path.join(directory, f"gauge_liveall_{pid}.db"))}
        self._written: dict[str, dict[str, float]] = {"counter": {}, "gauge": {}}  # key -> value in the file
        self._keys: dict[tuple, str] = {}  # (family, sample, labels) -> its key in the files
        self._order: dict[str, Metric] = {}  # every family this worker exports (samples or none), in its order
        self._lock = threading.Lock()
        self.copy_seconds = 0.0  # CPU time of the last flush (the time it held a core, not waits for the GIL)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.flush()
        self._thread = threading.Thread(target=self._flush_forever, name="metrics-flush", daemon=True)
        self._thread.start()

    def _flush_forever(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:
                log.exception("could not copy this worker's metrics to %s", self.directory)

    def flush(self) -> None:
        """Copy every sample of this worker into its files, only those whose value changed since the last
        copy; a series that is gone (a version unloaded) is written as NaN, which the sum skips."""
        with self._lock:
            started = time.thread_time()
            seen: dict[str, dict[str, float]] = {"counter": {}, "gauge": {}}
            copy = Metric(COPY_SECONDS.name, COPY_SECONDS.documentation, "gauge")
            copy.add_sample(COPY_SECONDS.name, {}, self.copy_seconds)
            keys = self._keys
            for metric in [*self._collect(), copy]:
                if metric.name not in self._order:
                    self._order[metric.name] = Metric(metric.name, metric.documentation, metric.type)
                where = "gauge" if metric.type in GAUGE_KINDS else "counter"
                target, written, now = self._files[where], self._written[where], seen[where]
                for sample in metric.samples:
                    cache_key = (metric.name, sample.name, tuple(sample.labels.items()))
                    key = keys.get(cache_key)
                    if key is None:
                        key = keys[cache_key] = json.dumps([metric.name, metric.type, metric.documentation,
                                                            sample.name, list(sample.labels.items())])
                    value = float(sample.value)
                    if written.get(key) != value:
                        target.write_value(key, value, 0.0)
                    now[key] = value
            for where, values in seen.items():
                for key in self._written[where].keys() - values.keys():
                    self._files[where].write_value(key, float("nan"), 0.0)
            self._written = seen
            self.copy_seconds = time.thread_time() - started

    def stop(self) -> None:
        """Last copy (what was answered until the end counts), then close the files."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
        with self._lock:
            for target in self._files.values():
                target.close()

    def families(self) -> list[Metric]:
        """Every worker's samples added up, families in the order one process writes them."""
        self.flush()
        own = [os.path.join(self.directory, f"{kind}_{self.pid}.db") for kind in ("counter", "gauge_liveall")]
        others = sorted(set(glob.glob(os.path.join(self.directory, "*.db"))) - set(own))
        merged = {metric.name: metric for metric in merge([*own, *others])}
        # a family no worker has a sample of keeps its HELP and TYPE lines, as with one process
        return [merged.pop(name, empty) for name, empty in self._order.items()] + list(merged.values())

    def render(self) -> bytes:
        return generate_latest(_Fixed(self.families()))


class _Fixed:
    """A collector of metrics already gathered, for prometheus_client's writer."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def merge(paths: Iterable[str]) -> list[Metric]:
    """Sum counters and histograms over every file, gauges over the live workers' files by ``GAUGE_RULES``."""
    heads: dict[str, tuple[str, str]] = {}  # family -> (type, help), first seen first
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]] = {}
    for path in paths:
        try:
            entries = MmapedDict.read_all_values_from_file(path)
        except FileNotFoundError:  # a dead worker's gauges, removed between the glob and now
            continue
        for key, value, _timestamp, _position in entries:
            if value != value:  # NaN: a series this worker no longer has
                continue
            name, kind, help_text, sample, labels = json.loads(key)
            heads.setdefault(name, (kind, help_text))
            values.setdefault(name, {}).setdefault((sample, tuple(map(tuple, labels))), []).append(value)
    merged: list[Metric] = []
    for name, (kind, help_text) in heads.items():
        metric = Metric(name, help_text, kind)
        rule = GAUGE_RULES.get(name, "sum") if kind in GAUGE_KINDS else "sum"
        for (sample, labels), found in values[name].items():
            if rule == "psi":
                value = _psi(values, dict(labels))
            else:
                value = min(found) if rule == "min" else max(found) if rule == "max" else sum(found)
            metric.add_sample(sample, dict(labels), value)
        merged.append(metric)
    return merged


def _psi(values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]],
         series: dict[str, str]) -> float:
    """A feature's PSI over the summed served histogram against its reference shares (both cumulative, in
    the order of their buckets)."""
    from serving.observability.drift import psi

    def cumulative(family: str, sample: str, combine: Callable[[list[float]], float]) -> list[float]:
        return [combine(found) for (name, labels), found in values.get(family, {}).items()
                if name == sample and {k: v for k, v in labels if k != "le"} == series]

    counts = cumulative(FEATURE_VALUE, FEATURE_VALUE + "_bucket", sum)
    shares = cumulative(REFERENCE_SHARE, REFERENCE_SHARE, max)
    if not counts or len(counts) != len(shares):
        return 0.0
    observed = np.diff(np.asarray(counts), prepend=0.0)
    expected = np.diff(np.asarray(shares), prepend=0.0)
    return round(psi(expected, observed), 6)
