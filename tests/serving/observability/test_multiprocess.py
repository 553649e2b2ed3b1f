"""The metrics of several workers summed into one exposition: counters and histograms added with TF Serving's
``le`` strings kept, gauges by their rule, a dead worker's counters kept and its gauges dropped."""
from __future__ import annotations

from pathlib import Path

from serving_helpers import metric_samples, metric_value

from serving.observability.metrics import Registry
from serving.observability.multiprocess import clean, worker_died

LATENCY = ":tensorflow:serving:request_latency"


def _workers(directory: Path) -> tuple[Registry, Registry]:
    first, second = Registry(), Registry()
    first.share(str(directory), pid=101)
    second.share(str(directory), pid=102)
    return first, second


def test_counters_and_histograms_are_summed_with_tf_servings_le_strings(tmp_path: Path) -> None:
    first, second = _workers(tmp_path)
    for registry, calls in ((first, 3), (second, 2)):
        for _ in range(calls):
            registry.request_count.inc(("demo", "OK", "1"))
            registry.request_latency.observe(("demo", "predict", "REST", "1"), 15.0)
    second.shared.flush()
    alone = Registry()
    alone.request_latency.observe(("demo", "predict", "REST", "1"), 15.0)
    local = [labels["le"] for labels, _ in metric_samples(alone.render().decode(), LATENCY + "_bucket")]

    text = first.render().decode()
    assert metric_value(text, ":tensorflow:serving:request_count", model_name="demo", status="OK") == 5
    buckets = metric_samples(text, LATENCY + "_bucket")
    assert [labels["le"] for labels, _ in buckets] == local  # "10", "18", "32.4", ... as one process writes them
    assert metric_value(text, LATENCY + "_bucket", le="10") == 0
    assert metric_value(text, LATENCY + "_bucket", le="18") == 5
    assert metric_value(text, LATENCY + "_sum") == 75 and metric_value(text, LATENCY + "_count") == 5


def test_gauges_follow_their_rule_and_leave_with_a_dead_worker(tmp_path: Path) -> None:
    first, second = _workers(tmp_path)
    first.feedback_memory_entries.set((), 4)
    second.feedback_memory_entries.set((), 6)
    first.audit_writable.set((), 1.0)
    second.audit_writable.set((), 0.0)  # one worker cannot write its audit log
    second.request_count.inc(("demo", "OK", "1"), 7)
    second.shared.flush()
    text = first.render().decode()
    assert metric_value(text, "esteira_feedback_memory_entries") == 10  # summed
    assert metric_value(text, "esteira_audit_log_writable") == 0  # the least of them

    worker_died(str(tmp_path), 102)
    text = first.render().decode()
    assert metric_value(text, "esteira_feedback_memory_entries") == 4
    assert metric_value(text, "esteira_audit_log_writable") == 1
    assert metric_value(text, ":tensorflow:serving:request_count", model_name="demo") == 7  # never goes back


def test_a_series_a_worker_dropped_leaves_the_sum_and_a_new_run_starts_from_nothing(tmp_path: Path) -> None:
    first, second = _workers(tmp_path)
    second.model_state.set(("demo", "1"), 1.0)
    second.shared.flush()
    assert metric_value(first.render().decode(), "esteira_model_version_available", version="1") == 1
    second.model_state.remove_matching(("demo", "1"))  # the version was unloaded
    second.shared.flush()
    assert metric_value(first.render().decode(), "esteira_model_version_available", version="1") is None

    second.request_count.inc(("demo", "OK", "1"))
    second.shared.stop()
    first.shared.stop()
    clean(str(tmp_path))
    assert not list(tmp_path.glob("*.db"))


def test_one_worker_shared_writes_what_it_writes_alone(tmp_path: Path) -> None:
    registry = Registry()
    registry.request_count.inc(("demo", "OK", "1"))
    registry.request_latency.observe(("demo", "predict", "REST", "1"), 15.0)

    def lines(text: str) -> list[str]:  # process_* values move between two renders; the copy's own time is added
        return [line for line in text.splitlines()
                if not line.startswith("process_") and "esteira_metrics_copy_seconds" not in line]

    alone = lines(registry.render().decode())
    registry.share(str(tmp_path))
    assert lines(registry.render().decode()) == alone
