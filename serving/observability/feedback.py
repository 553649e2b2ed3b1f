"""Late labels joined to the predictions they label: the bounded prediction memory and the feedback join.

A prediction is remembered under its request id (model, version, the predicted class of each row) for
a TTL, up to a maximum number of entries and a maximum of bytes (a 64-row prediction kept for a review
holds its inputs: entries alone do not bound the memory); the oldest are evicted first and counted. A label for a
remembered row is counted once in ``esteira_feedback_total``; every label that cannot be joined
(unknown, expired or evicted id, duplicate, another model, a row or class the prediction never had) is
counted by reason in ``esteira_feedback_unmatched_total`` and reported back, never counted twice.
"""
from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.observability.metrics import Registry
from serving.protocol.errors import Code, ServingError
from serving.protocol.tensors import StackedInputs

DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_TTL_SECONDS = 86_400.0
MAX_CLASSES = 64  # bound on the class label set of esteira_predictions_total and esteira_feedback_total
MAX_FEEDBACK_ITEMS = 10_000
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_IDS_PER_READ = 256
_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))  # the variant and version fields of a UUID
_UUID4_SET = (0x8000 << 48) | (4 << 76)  # RFC 4122 variant, version 4
_random_blocks: list[bytes] = []
os.register_at_fork(after_in_child=_random_blocks.clear)  # a forked worker must not repeat its parent's ids


def new_request_id() -> str:
    """A random UUID4 in hex, as ``uuid.uuid4().hex``, from os.urandom 4 KiB at a time: one system call
    per 256 requests instead of one each (it was the request path's largest item of our own in a profile)."""
    try:
        raw = _random_blocks.pop()  # atomic: two threads never take the same bytes
    except IndexError:
        block = os.urandom(16 * _IDS_PER_READ)
        _random_blocks[:] = [block[i: i + 16] for i in range(16, len(block), 16)]
        raw = block[:16]
    return f"{int.from_bytes(raw) & _UUID4_CLEAR | _UUID4_SET:032x}"


def request_id(given: str | None) -> str:
    """The client's id when it is usable as one, a new UUID when none was given."""
    if given is None or given == "":
        return new_request_id()
    if not REQUEST_ID_PATTERN.fullmatch(given):
        raise ServingError(
            Code.INVALID_ARGUMENT,
            "Request id must be 1 to 128 characters of letters, digits, '.', '_', ':' or '-'; "
            "send such an id in X-Request-Id (REST) / x-request-id (gRPC), or none to get one generated")
    return given


SMALL = 16  # rows up to which plain Python floats beat numpy's per-call overhead (most requests)


@dataclass(frozen=True)
class RowClasses:
    """Predicted class index (one byte per row) and score per row, and how many classes the output names."""

    classes: bytes
    scores: np.ndarray | list[float]  # the probability of a single output, else the top class's score
    num_classes: int

    def counts(self) -> list[int]:
        """Rows per class index."""
        found = [0] * self.num_classes
        if len(self.classes) <= SMALL:
            for index in self.classes:
                found[index] += 1
            return found
        return np.bincount(np.frombuffer(self.classes, dtype=np.uint8), minlength=self.num_classes).tolist()


def row_classes(outputs: Mapping[str, np.ndarray], threshold: float | None = None) -> RowClasses | None:
    """The rule of ``esteira_predictions_total{class}``: class 1 when a single probability is above the model's
    decision threshold (the Evaluator's rule and value, read from the model by servables/model_facts.py;
    a model that names none: >= 0.5; NaN is class 0), else the argmax; None when the output is not one
    float score vector or matrix per row."""
    if len(outputs) != 1:
        return None
    values = next(iter(outputs.values()))
    if values.dtype.kind != "f" or values.ndim == 0 or values.ndim > 2:
        return None
    if values.ndim == 1 or values.shape[1] == 1:
        if values.size <= SMALL:
            scores = values.ravel().tolist()
            if threshold is None:
                return RowClasses(bytes(1 if score >= 0.5 else 0 for score in scores), scores, 2)
            return RowClasses(bytes(1 if score > threshold else 0 for score in scores), scores, 2)
        flat = values.reshape(-1)
        alerts = flat >= 0.5 if threshold is None else flat > threshold
        return RowClasses(alerts.astype(np.uint8).tobytes(), flat, 2)
    if values.shape[1] > MAX_CLASSES:
        return None
    classes = values.argmax(axis=1)
    return RowClasses(classes.astype(np.uint8).tobytes(), values[np.arange(values.shape[0]), classes], values.shape[1])


REVIEW_MAX_ROWS = 64  # a prediction of at most this many rows keeps its inputs for a review of the decision


ENTRY_OVERHEAD_BYTES = 600  # an entry's objects besides its arrays (measured with tracemalloc: ~560 on CPython 3.11)
ARRAY_OVERHEAD_BYTES = 112  # a numpy array's header
GONE_OVERHEAD_BYTES = 160  # a forgotten id kept for the reason: its string and its place in the ordered dict
GONE_SHARE = 16  # forgotten ids may hold at most this fraction (1/16) of --feedback_max_bytes


@dataclass(slots=True)
class _Remembered:
    model: str
    version: str
    classes: bytes  # one byte per row: the predicted class index
    num_classes: int
    expires: float
    labelled: set[int] | None = None  # rows already labelled (made on the first label: most never get one)
    # what a review of a contested decision needs (console review channel): the inputs as received
    # (already pseudonymized and generalized upstream), the signature that answered and the scores
    inputs: Mapping[str, np.ndarray] | None = None
    signature: str = ""
    scores: np.ndarray | None = None
    size: int = 0  # bytes counted against --feedback_max_bytes


def _compact(inputs: Mapping[str, np.ndarray]) -> tuple[Mapping[str, np.ndarray], int]:
    """The inputs kept for a review, and their bytes: rows of one array stay one array (a dict of one
    view per input costs 30 array headers per prediction); an array that is a view of a larger buffer is
    copied so it does not keep that buffer alive."""
    if type(inputs) is StackedInputs:
        matrix = inputs.matrix if inputs.matrix.base is None else inputs.matrix.copy()
        return StackedInputs(matrix, inputs.aliases), matrix.nbytes + ARRAY_OVERHEAD_BYTES
    kept = {alias: value if value.base is None else value.copy() for alias, value in inputs.items()}
    return kept, sum(value.nbytes + ARRAY_OVERHEAD_BYTES for value in kept.values())


@dataclass(frozen=True)
class RecalledPrediction:
    """A remembered prediction as a review reads it."""

    request_id: str
    model: str
    version: int
    signature: str
    inputs: Mapping[str, np.ndarray]
    classes: list[int]
    scores: list[float]
    expires_in_seconds: float


class PredictionMemory:
    """Request id -> what was predicted, bounded by entries, bytes and age. Ids that left the memory are
    kept (ids only, as many as the memory may hold entries) so a late label is told "expired" or
    "evicted", not "unknown"."""

    def __init__(self, metrics: Registry, max_entries: int = DEFAULT_MAX_ENTRIES,
                 ttl_seconds: float = DEFAULT_TTL_SECONDS, clock: Callable[[], float] = time.monotonic,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_entries < 1:
            raise ValueError(f"--feedback_max_entries must be at least 1, got {max_entries}")
        if ttl_seconds <= 0:
            raise ValueError(f"--feedback_ttl_seconds must be positive, got {ttl_seconds}")
        if max_bytes < 64 * 1024:
            raise ValueError(f"--feedback_max_bytes must be at least 65536 (64 KiB), got {max_bytes}")
        self.metrics = metrics
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self.bytes = 0  # what the remembered entries and forgotten ids hold, as counted against max_bytes
        self._gone_bytes = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Remembered] = OrderedDict()
        self._gone: OrderedDict[str, str] = OrderedDict()  # request id -> "expired" | "evicted"
        self.unknown_note = ""  # with --server_processes>1: why an id may be unknown to this process
        metrics.feedback_memory_entries.set_function(lambda: [((), float(len(self._entries)))])
        metrics.feedback_memory_bytes.set_function(lambda: [((), float(self.bytes))])

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, request_id: str, model: str, version: int | str, rows: RowClasses,
                 inputs: Mapping[str, np.ndarray] | None = None, signature: str = "") -> None:
        now = self._clock()
        entry = _Remembered(model, str(version), rows.classes, rows.num_classes, now + self.ttl_seconds)
        entry.size = ENTRY_OVERHEAD_BYTES + len(request_id) + len(rows.classes)
        if inputs is not None and len(rows.classes) <= REVIEW_MAX_ROWS:
            entry.inputs, kept = _compact(inputs)
            entry.signature = signature
            entry.scores = np.asarray(rows.scores, dtype=np.float64)
            entry.size += kept + entry.scores.nbytes + ARRAY_OVERHEAD_BYTES
        with self._lock:
            self._expire(now)
            previous = self._entries.pop(request_id, None)
            if previous is not None:
                self.bytes -= previous.size
                if previous.model == entry.model:
                    entry.labelled = previous.labelled  # a reused id never takes a second label for a row
            if self._gone.pop(request_id, None) is not None:
                self._gone_bytes -= GONE_OVERHEAD_BYTES + len(request_id)
                self.bytes -= GONE_OVERHEAD_BYTES + len(request_id)
            self._entries[request_id] = entry
            self.bytes += entry.size
            while len(self._entries) > self.max_entries or (self.bytes > self.max_bytes and len(self._entries) > 1):
                old_id, old = self._entries.popitem(last=False)
                self.bytes -= old.size
                self._forget(old_id, "evicted")

    def _expire(self, now: float) -> None:
        while self._entries:
            old_id, oldest = next(iter(self._entries.items()))
            if oldest.expires > now:
                return
            del self._entries[old_id]
            self.bytes -= oldest.size
            self._forget(old_id, "expired")

    def _forget(self, request_id: str, reason: str) -> None:
        self.metrics.feedback_memory_evictions.inc((reason,))
        if request_id not in self._gone:
            self._gone_bytes += GONE_OVERHEAD_BYTES + len(request_id)
            self.bytes += GONE_OVERHEAD_BYTES + len(request_id)
        self._gone[request_id] = reason
        while self._gone and (len(self._gone) > self.max_entries or self._gone_bytes > self.max_bytes // GONE_SHARE):
            old_id, _ = self._gone.popitem(last=False)
            self._gone_bytes -= GONE_OVERHEAD_BYTES + len(old_id)
            self.bytes -= GONE_OVERHEAD_BYTES + len(old_id)

    def recall(self, model: str, request_id: str) -> RecalledPrediction:
        """The remembered prediction of ``request_id`` for a review; NOT_FOUND says why it is not there and
        for how long predictions are kept."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            entry = self._entries.get(request_id)
            if entry is None:
                reason = self._gone.get(request_id, "unknown")
                kept = (f"this server keeps predictions for {self.ttl_seconds:g} s (--feedback_ttl_seconds), "
                        f"at most {self.max_entries} (--feedback_max_entries) holding at most {self.max_bytes} "
                        "bytes (--feedback_max_bytes)")
                why = {"unknown": "no prediction with this request id is remembered" + self.unknown_note,
                       "expired": "the prediction was forgotten when its retention period ended",
                       "evicted": "the prediction was evicted to make room for newer ones"}[reason]
                raise ServingError(Code.NOT_FOUND, f"Request id '{request_id}': {why}; {kept}")
            if entry.model != model:
                raise ServingError(Code.NOT_FOUND, f"Request id '{request_id}' belongs to model '{entry.model}', "
                                                   f"not '{model}'")
            if entry.inputs is None or entry.scores is None:
                raise ServingError(Code.FAILED_PRECONDITION, (
                    f"Request id '{request_id}': the prediction is remembered for feedback only (its inputs were "
                    f"not kept: more than {REVIEW_MAX_ROWS} rows, or not a Predict on named inputs)"))
            return RecalledPrediction(request_id, entry.model, int(entry.version), entry.signature, entry.inputs,
                                      list(entry.classes), entry.scores.tolist(), entry.expires - now)

    def join(self, model: str, request_id: str, row: int, label: int) -> dict[str, Any]:
        """Count one label against its remembered row; the result says what happened to it."""
        with self._lock:
            self._expire(self._clock())
            entry = self._entries.get(request_id)
            if entry is None:
                reason = self._gone.get(request_id, "unknown")
                return self._unmatched(request_id, row, reason, {
                    "unknown": "no prediction with this request id is remembered" + self.unknown_note,
                    "expired": f"the prediction was forgotten after {self.ttl_seconds:g} s (--feedback_ttl_seconds)",
                    "evicted": f"the prediction was evicted to keep at most {self.max_entries} "
                               f"(--feedback_max_entries) holding at most {self.max_bytes} bytes "
                               "(--feedback_max_bytes)",
                }[reason])
            if entry.model != model:
                return self._unmatched(request_id, row, "wrong_model",
                                       f"the request id belongs to model '{entry.model}', not '{model}'")
            if row >= len(entry.classes):
                return self._unmatched(request_id, row, "row_out_of_range",
                                       f"the prediction had {len(entry.classes)} row(s); rows count from 0")
            if label >= entry.num_classes:
                return self._unmatched(request_id, row, "invalid_label",
                                       f"label must be a class index from 0 to {entry.num_classes - 1}")
            if entry.labelled is None:
                entry.labelled = set()
            elif row in entry.labelled:
                return self._unmatched(request_id, row, "duplicate", "this row was already labelled; counted once")
            entry.labelled.add(row)
            predicted = entry.classes[row]
            self.metrics.feedback.inc((model, entry.version, str(label), str(predicted)))
            return {"request_id": request_id, "row": row, "status": "counted", "version": entry.version,
                    "predicted_class": str(predicted), "true_class": str(label)}

    def _unmatched(self, request_id: str, row: int, reason: str, message: str) -> dict[str, Any]:
        self.metrics.feedback_unmatched.inc((reason,))
        return {"request_id": request_id, "row": row, "status": reason, "message": message}


@dataclass(frozen=True)
class FeedbackItem:
    request_id: str
    label: int
    row: int = 0


def parse_feedback(document: Any) -> list[FeedbackItem]:
    """The whole body or nothing: a malformed item rejects the request before any label is counted."""
    hint = 'send {"feedback": [{"request_id": "<id>", "label": <class index>, "row": <row, default 0>}, ...]}'
    if not isinstance(document, dict) or not isinstance(document.get("feedback"), list):
        raise ServingError(Code.INVALID_ARGUMENT, f"Feedback body must be an object with a 'feedback' list; {hint}")
    unknown_keys = set(document) - {"feedback"}
    if unknown_keys:
        raise ServingError(Code.INVALID_ARGUMENT, f"Unknown key(s) {sorted(unknown_keys)} in feedback body; {hint}")
    entries = document["feedback"]
    if not entries:
        raise ServingError(Code.INVALID_ARGUMENT, f"The 'feedback' list is empty; {hint}")
    if len(entries) > MAX_FEEDBACK_ITEMS:
        raise ServingError(Code.INVALID_ARGUMENT, f"{len(entries)} feedback items in one request; send at most "
                                               f"{MAX_FEEDBACK_ITEMS} per request")
    items = []
    for index, entry in enumerate(entries):
        where = f"feedback[{index}]"
        if not isinstance(entry, dict):
            raise ServingError(Code.INVALID_ARGUMENT, f"{where} is not an object; {hint}")
        extra = set(entry) - {"request_id", "label", "row"}
        if extra:
            raise ServingError(Code.INVALID_ARGUMENT, f"{where} has unknown key(s) {sorted(extra)}; {hint}")
        rid = entry.get("request_id")
        if not isinstance(rid, str) or not REQUEST_ID_PATTERN.fullmatch(rid):
            raise ServingError(Code.INVALID_ARGUMENT, f"{where}.request_id must be the request id returned with the "
                                                   "prediction (1 to 128 of A-Z a-z 0-9 . _ : -)")
        label, row = entry.get("label"), entry.get("row", 0)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < MAX_CLASSES:
            raise ServingError(Code.INVALID_ARGUMENT, f"{where}.label must be a class index, an integer from 0 to "
                                                   f"{MAX_CLASSES - 1} (0 or 1 for a probability output)")
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"{where}.row must be a row index of the prediction, an integer >= 0")
        items.append(FeedbackItem(rid, label, row))
    return items
