"""Eval rows from MLMD and what a version scores on them: score distribution and calibration.

The rows are the eval split of the Examples artifact a version was trained on (its MLflow run
names the artifact's MLMD id); scores come from the pushed SavedModel itself, the way the drift
report scores them (evidence/predictions.py), so two versions are compared on the very same rows.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from errors import EsteiraError

SCORE_BINS = 20
CALIBRATION_BINS = 10


class EvidenceUnavailable(EsteiraError, LookupError):
    """MLMD or a SavedModel does not hold what a chart needs; the message says what and the fix."""


@dataclass(frozen=True)
class EvalRows:
    """Serialized tf.Examples of one eval split, and their labels when the label feature is known."""

    examples_id: int
    records: list[bytes]
    labels: np.ndarray | None


def _label_values(records: list[bytes], label_key: str) -> np.ndarray | None:
    from tensorflow.core.example import example_pb2

    values = []
    for record in records:
        feature = example_pb2.Example.FromString(record).features.feature.get(label_key)
        if feature is None:
            return None
        kind = feature.WhichOneof("kind")
        if kind not in ("int64_list", "float_list") or not getattr(feature, kind).value:
            return None
        values.append(float(getattr(feature, kind).value[0]))
    return np.asarray(values)


def load_eval_rows(metadata_path: Path | None, examples_id: int | None, label_key: str | None,
                   limit: int) -> EvalRows:
    """The first ``limit`` rows of the eval split of Examples ``examples_id``."""
    if metadata_path is None:
        raise EvidenceUnavailable("no MLMD database configured; start the console with --config (its "
                                  "pipeline.metadata_path) or --metadata_path")
    if examples_id is None:
        raise EvidenceUnavailable("the version's MLflow run names no Examples artifact (tag mlmd.examples_id); "
                                  "register versions through the pipeline")
    from evidence import lineage, predictions

    try:
        store = lineage.open_store(metadata_path)
        found = store.get_artifacts_by_id([examples_id])
        if not found:
            raise EvidenceUnavailable(f"MLMD at {metadata_path} has no Examples artifact {examples_id}; the run "
                                      "was recorded in another metadata store: start the console with its config")
        records = predictions.serialized_examples(found[0], limit=limit)
    except lineage.LineageError as error:
        raise EvidenceUnavailable(str(error)) from None
    return EvalRows(examples_id, records, _label_values(records, label_key) if label_key else None)


class ScoreCache:
    """Scores per (serving version, Examples id): a SavedModel load takes seconds, a page view should not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scores: dict[tuple[str, int, int], np.ndarray] = {}

    def scores(self, base_path: Path, serving_version: str, rows: EvalRows) -> np.ndarray:
        key = (serving_version, rows.examples_id, len(rows.records))
        with self._lock:
            if key not in self._scores:
                self._scores[key] = _score(base_path, serving_version, rows)
            return self._scores[key]


def _score(base_path: Path, serving_version: str, rows: EvalRows) -> np.ndarray:
    from evidence.predictions import predict_scores

    model_dir = Path(base_path) / serving_version
    if not (model_dir / "saved_model.pb").is_file():
        raise EvidenceUnavailable(f"no SavedModel at {model_dir}; the serving base path does not hold version "
                                  f"{serving_version} (check --base_path or restore the push)")
    return predict_scores(model_dir, rows.records)


def score_histogram(scores: np.ndarray, bins: int = SCORE_BINS) -> dict[str, list[float]]:
    """Share of rows per score bin on [0, 1]; ``x`` holds each bin's left edge."""
    counts, edges = np.histogram(np.clip(scores, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    total = max(int(counts.sum()), 1)
    return {"x": [round(float(e), 4) for e in edges[:-1]], "share": [float(c) / total for c in counts]}


def calibration(scores: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, list]:
    """Mean predicted score against the observed positive rate, per score bin that holds rows."""
    index = np.minimum((np.clip(scores, 0.0, 1.0) * bins).astype(int), bins - 1)
    predicted, observed, rows = [], [], []
    for b in range(bins):
        mask = index == b
        if mask.any():
            predicted.append(float(scores[mask].mean()))
            observed.append(float(labels[mask].mean()))
            rows.append(int(mask.sum()))
    return {"predicted": predicted, "observed": observed, "rows": rows}
