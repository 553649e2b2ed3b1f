"""The prediction memory and the feedback join: bounded, TTL'd, each labelled row counted once."""
from __future__ import annotations

import os
import tracemalloc
import uuid

import grpc
import numpy as np
import pytest

from serving.flags import ServerFlags, usage
from serving.observability.feedback import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    PredictionMemory,
    parse_feedback,
    request_id,
    row_classes,
)
from serving.observability.metrics import Registry
from serving.protocol.errors import ServingError
from serving.protocol.tensors import StackedInputs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rows(*scores: float):  # type: ignore[no-untyped-def]
    rows = row_classes({"p": np.asarray(scores, dtype=np.float32).reshape(-1, 1)})
    assert rows is not None
    return rows


def test_row_classes_follow_the_predictions_total_rule() -> None:
    binary = _rows(0.2, 0.5, 0.9)
    assert list(binary.classes) == [0, 1, 1] and binary.num_classes == 2 and binary.counts() == [1, 2]
    many = row_classes({"p": np.asarray([0.2, np.nan] + [0.9] * 30, dtype=np.float32)})  # the numpy path
    assert many is not None and list(many.classes) == [0, 0] + [1] * 30 and many.counts() == [2, 30]
    multi = row_classes({"p": np.asarray([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype=np.float32)})
    assert multi is not None and list(multi.classes) == [1, 0] and multi.num_classes == 3
    assert multi.scores.tolist() == pytest.approx([0.7, 0.6])
    assert row_classes({"a": np.zeros(2), "b": np.zeros(2)}) is None  # two outputs: no class
    assert row_classes({"p": np.zeros(3, dtype=np.int64)}) is None  # not scores


def test_labels_join_once_and_feed_the_confusion_counts() -> None:
    metrics = Registry()
    memory = PredictionMemory(metrics, clock=Clock())
    memory.remember("r1", "demo", 2, _rows(0.9, 0.1))
    assert memory.join("demo", "r1", 0, 0)["status"] == "counted"  # predicted 1, truly 0
    assert memory.join("demo", "r1", 1, 0)["status"] == "counted"  # predicted 0, truly 0
    assert memory.join("demo", "r1", 0, 1)["status"] == "duplicate"
    assert metrics.feedback.value(("demo", "2", "0", "1")) == 1
    assert metrics.feedback.value(("demo", "2", "0", "0")) == 1
    assert metrics.feedback.value(("demo", "2", "1", "1")) == 0  # the duplicate was not counted
    assert metrics.feedback_unmatched.value(("duplicate",)) == 1


def test_unmatched_reasons_are_told_and_counted() -> None:
    metrics = Registry()
    memory = PredictionMemory(metrics, clock=Clock())
    memory.remember("r1", "demo", 1, _rows(0.9))
    assert memory.join("demo", "nope", 0, 1)["status"] == "unknown"
    assert memory.join("other", "r1", 0, 1)["status"] == "wrong_model"
    assert memory.join("demo", "r1", 1, 1)["status"] == "row_out_of_range"
    result = memory.join("demo", "r1", 0, 2)
    assert result["status"] == "invalid_label" and "0 to 1" in result["message"]
    assert sum(metrics.feedback_unmatched.value((r,)) for r in
               ("unknown", "wrong_model", "row_out_of_range", "invalid_label")) == 4
    assert memory.join("demo", "r1", 0, 1)["status"] == "counted"  # the refusals did not use the row up


def test_memory_is_bounded_by_entries_and_age() -> None:
    metrics, clock = Registry(), Clock()
    memory = PredictionMemory(metrics, max_entries=2, ttl_seconds=60, clock=clock)
    for rid in ("a", "b", "c"):
        memory.remember(rid, "demo", 1, _rows(0.9))
    assert len(memory) == 2 and metrics.feedback_memory_evictions.value(("evicted",)) == 1
    result = memory.join("demo", "a", 0, 1)
    assert result["status"] == "evicted" and "--feedback_max_entries" in result["message"]
    clock.now += 61
    result = memory.join("demo", "b", 0, 1)
    assert result["status"] == "expired" and "--feedback_ttl_seconds" in result["message"]
    assert len(memory) == 0 and metrics.feedback_memory_evictions.value(("expired",)) == 2
    assert metrics.feedback.value(("demo", "1", "1", "1")) == 0
    assert b"esteira_feedback_memory_entries 0.0" in metrics.render()


def _review_inputs(rows: int, seed: int) -> StackedInputs:
    """What REST and gRPC hand the memory for 30 float features: one matrix, a row per input."""
    matrix = np.random.default_rng(seed).random((30, rows), dtype=np.float32)
    return StackedInputs(matrix, tuple(sorted(f"feature_{i}" for i in range(30))))


def test_memory_is_bounded_by_bytes_with_the_inputs_a_review_keeps() -> None:
    """64-row predictions kept for a review hold ~8 KB each: the entry bound alone let the memory grow by
    gigabytes; the byte bound evicts the oldest, and what the memory counts is what it holds."""
    metrics, limit = Registry(), 1024 * 1024
    memory = PredictionMemory(metrics, max_entries=100_000, max_bytes=limit, clock=Clock())
    scores = np.linspace(0, 1, 64, dtype=np.float32).reshape(-1, 1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1000):
            memory.remember(f"r{i}", "demo", 1, _rows(*scores.ravel()), _review_inputs(64, i), "predict_raw")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0 < memory.bytes <= limit and 100 <= len(memory) < 1000
    evicted = metrics.feedback_memory_evictions.value(("evicted",))
    assert evicted == 1000 - len(memory)
    assert held <= 1.3 * limit, f"the memory holds {held} bytes against its bound of {limit}"  # counted honestly
    result = memory.join("demo", f"r{evicted - 1:.0f}", 0, 1)  # the last one evicted
    assert result["status"] == "evicted" and "--feedback_max_bytes" in result["message"]
    assert memory.join("demo", "r0", 0, 1)["status"] == "unknown"  # forgotten ids are bounded too
    recalled = memory.recall("demo", "r999")
    assert recalled.scores == pytest.approx(scores.ravel().tolist()) and len(recalled.classes) == 64
    assert np.array_equal(recalled.inputs["feature_0"], _review_inputs(64, 999)["feature_0"])
    [line] = [x for x in metrics.render().decode().splitlines() if x.startswith("esteira_feedback_memory_bytes ")]
    assert float(line.split()[1]) == memory.bytes


def test_a_kept_input_does_not_keep_a_larger_buffer_alive() -> None:
    memory = PredictionMemory(Registry(), clock=Clock())
    big = np.zeros((30, 10_000), dtype=np.float32)
    memory.remember("r", "demo", 1, _rows(0.9), StackedInputs(big[:, :1], _review_inputs(1, 0).aliases), "p")
    kept = memory.recall("demo", "r").inputs
    assert isinstance(kept, StackedInputs) and kept.matrix.base is None and kept.matrix.nbytes == 30 * 4
    assert memory.bytes < 2048


def test_reused_request_id_never_labels_a_row_twice() -> None:
    metrics = Registry()
    memory = PredictionMemory(metrics, clock=Clock())
    memory.remember("r", "demo", 1, _rows(0.9))
    assert memory.join("demo", "r", 0, 1)["status"] == "counted"
    memory.remember("r", "demo", 2, _rows(0.1))
    assert memory.join("demo", "r", 0, 1)["status"] == "duplicate"
    assert metrics.feedback.value(("demo", "2", "1", "0")) == 0 and metrics.feedback.value(("demo", "1", "1", "1")) == 1


def test_memory_flags_checked() -> None:
    with pytest.raises(ValueError, match="--feedback_max_entries"):
        PredictionMemory(Registry(), max_entries=0)
    with pytest.raises(ValueError, match="--feedback_ttl_seconds"):
        PredictionMemory(Registry(), ttl_seconds=0)
    with pytest.raises(ValueError, match="--feedback_max_bytes must be at least 65536"):
        PredictionMemory(Registry(), max_bytes=1000)
    flags = ServerFlags()  # the flags' defaults are the memory's own
    assert (flags.feedback_max_entries, flags.feedback_max_bytes) == (DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES)
    assert "--feedback_max_bytes=" in usage()


def test_request_id_taken_from_client_or_generated() -> None:
    assert request_id("order-42:a.b_c") == "order-42:a.b_c"
    generated = {request_id(None), request_id("")}
    assert len(generated) == 2 and all(len(g) == 32 for g in generated)
    for bad in ("has space", "x" * 129, "é"):
        with pytest.raises(ServingError, match="X-Request-Id") as info:
            request_id(bad)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_generated_request_ids_are_distinct_uuid4s_across_refills_and_forks() -> None:
    ids = [request_id(None) for _ in range(600)]  # more than one read of random bytes
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(hex=i).version == 4 and uuid.UUID(hex=i).variant == uuid.RFC_4122 for i in ids)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # a forked worker draws its own ids, not the rest of its parent's random bytes
        os.write(writer, request_id(None).encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    assert os.read(reader, 64).decode() != request_id(None)
    os.close(reader)


@pytest.mark.parametrize(("body", "needle"), [
    ([], "'feedback' list"),
    ({"feedback": {}}, "'feedback' list"),
    ({"feedback": []}, "empty"),
    ({"feedback": [], "extra": 1}, "Unknown key"),
    ({"feedback": ["r1"]}, "feedback[0] is not an object"),
    ({"feedback": [{"request_id": "r1"}]}, "feedback[0].label"),
    ({"feedback": [{"request_id": "r1", "label": True}]}, "feedback[0].label"),
    ({"feedback": [{"request_id": "r1", "label": "1"}]}, "feedback[0].label"),
    ({"feedback": [{"request_id": "r1", "label": 1}, {"request_id": 5, "label": 1}]}, "feedback[1].request_id"),
    ({"feedback": [{"request_id": "r1", "label": 1, "row": -1}]}, "feedback[0].row"),
    ({"feedback": [{"request_id": "r1", "label": 1, "klass": 1}]}, "unknown key"),
])
def test_malformed_feedback_rejected_whole_with_the_fix(body: object, needle: str) -> None:
    with pytest.raises(ServingError) as info:
        parse_feedback(body)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and needle in info.value.message


def test_feedback_parsed_with_row_default() -> None:
    items = parse_feedback({"feedback": [{"request_id": "r1", "label": 1}, {"request_id": "r1", "label": 0, "row": 3}]})
    assert [(i.request_id, i.label, i.row) for i in items] == [("r1", 1, 0), ("r1", 0, 3)]
