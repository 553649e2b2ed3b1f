"""Before/after numbers: quality on the same eval rows, score differences, file size and latency.

Latency is measured in one process with the models interleaved call by call (SavedModel, then each
variant, then again), so a noisy neighbour slows every model alike and the ratios stay meaningful.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from optimization.errors import OptimizationError

Predict = Callable[[Mapping[str, np.ndarray]], np.ndarray]
LATENCY_BATCHES = (1, 64)


@dataclass(frozen=True)
class Quality:
    auc: float
    auc_pr: float
    recall_at_fpr: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def quality(labels: np.ndarray, scores: np.ndarray, false_positive_rate: float) -> Quality:
    """ROC AUC, area under the precision-recall curve (average precision) and recall at the FPR."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    labels = np.asarray(labels).ravel()
    if len(np.unique(labels)) < 2:
        raise OptimizationError(
            f"the eval rows hold only label {labels[:1].tolist()}; AUC needs both classes, so raise "
            "optimization.eval_rows or check the eval split")
    fpr, tpr, _ = roc_curve(labels, scores)
    return Quality(auc=float(roc_auc_score(labels, scores)), auc_pr=float(average_precision_score(labels, scores)),
                   recall_at_fpr=float(tpr[fpr <= false_positive_rate].max(initial=0.0)))


def score_differences(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    diff = np.abs(np.asarray(reference, np.float64).ravel() - np.asarray(candidate, np.float64).ravel())
    return {"max_abs_score_diff": float(diff.max()), "mean_abs_score_diff": float(diff.mean())}


def score_all(predict: Predict, rows: Mapping[str, np.ndarray], batch: int = 256) -> np.ndarray:
    count = len(next(iter(rows.values())))
    parts = [predict({name: values[start:start + batch] for name, values in rows.items()})
             for start in range(0, count, batch)]
    return np.concatenate([np.asarray(p, np.float64).ravel() for p in parts])


def interleaved_latency(models: Mapping[str, Predict], rows: Mapping[str, np.ndarray],
                        repeats: int) -> dict[str, dict[str, float]]:
    """Median milliseconds per call of each model at 1 and 64 rows, models taking turns on every repeat."""
    count = len(next(iter(rows.values())))
    samples: dict[tuple[str, int], list[float]] = {(name, size): [] for name in models for size in LATENCY_BATCHES}
    batches = {size: {name: np.resize(values, (size, *values.shape[1:])) for name, values in rows.items()}
               for size in LATENCY_BATCHES} if count else {}
    for size, batch in batches.items():  # one size at a time: a TFLite interpreter resizes only on a change
        for predict in models.values():
            predict(batch)  # warm: first calls allocate and trace
        for _ in range(repeats):
            for name, predict in models.items():
                started = time.perf_counter()
                predict(batch)
                samples[(name, size)].append((time.perf_counter() - started) * 1e3)
    return {name: {f"latency_ms_{size}_row{'s' if size > 1 else ''}": float(np.median(samples[(name, size)]))
                   for size in LATENCY_BATCHES} for name in models}


def saved_model_predict(function: Any, output: str) -> Predict:
    """The SavedModel signature as a scorer of numpy rows."""
    import tensorflow as tf

    def predict(rows: Mapping[str, np.ndarray]) -> np.ndarray:
        return function(**{name: tf.constant(values) for name, values in rows.items()})[output].numpy()

    return predict


def tflite_predict(model: bytes, signature: str, output: str) -> Predict:
    """A TFLite flatbuffer's signature as a scorer of numpy rows (one interpreter, resized per batch)."""
    runner = load_interpreter(model).get_signature_runner(signature)

    def predict(rows: Mapping[str, np.ndarray]) -> np.ndarray:
        return runner(**rows)[output]

    return predict


def load_interpreter(model: bytes) -> Any:
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():  # TF 2.21 announces the move to ai-edge-litert on every construction
        warnings.simplefilter("ignore", UserWarning)
        return tf.lite.Interpreter(model_content=model)
