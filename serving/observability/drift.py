"""Input-drift monitoring: the reference-histogram file a pushed model carries, and PSI against it.

File format (``<version_dir>/assets.extra/esteira_reference_stats.json``), written by the pipeline
from the training data's statistics and by :func:`write_reference`::

    {
      "format": "esteira.reference_histograms.v1",
      "features": {
        "<feature name>": {"boundaries": [b1, ..., bk], "counts": [c0, c1, ..., ck]}
      }
    }

``boundaries`` are strictly increasing; they cut the real line into ``k + 1`` buckets
``(-inf, b1), [b1, b2), ..., [bk, +inf)`` and ``counts`` holds how many training values fell in
each (``len(counts) == len(boundaries) + 1``). Feature names are the names requests use: input
aliases of a signature with named float inputs, or the feature keys of ``tf.Example`` inputs.

The Population Stability Index of served values against the reference is
``sum((p_i - q_i) * ln(p_i / q_i))`` over buckets, with ``p`` the served share and ``q`` the
training share, each floored at ``1e-4`` so empty buckets stay finite. Rule of thumb: < 0.1 stable,
0.1-0.25 moderate shift, > 0.25 significant shift.
"""
from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import EsteiraError

REFERENCE_FILE = "esteira_reference_stats.json"
FORMAT = "esteira.reference_histograms.v1"
_FLOOR = 1e-4


class ReferenceFormatError(EsteiraError, ValueError):
    """The reference-statistics file does not follow the documented format."""


@dataclass(frozen=True)
class FeatureReference:
    boundaries: np.ndarray
    counts: np.ndarray

    @property
    def shares(self) -> np.ndarray:
        total = float(self.counts.sum())
        return self.counts / total if total > 0 else np.full(len(self.counts), 1.0 / len(self.counts))


def build_reference(sample: Mapping[str, np.ndarray], buckets: int = 10) -> dict[str, FeatureReference]:
    """Quantile buckets from a sample of training values per feature."""
    reference = {}
    for name, values in sample.items():
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        quantiles = np.unique(np.quantile(values, np.linspace(0, 1, buckets + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(quantiles, values, side="right"), minlength=len(quantiles) + 1)
        reference[name] = FeatureReference(quantiles, counts.astype(np.float64))
    return reference


def write_reference(version_dir: str | Path, reference: Mapping[str, FeatureReference]) -> Path:
    target = Path(version_dir) / "assets.extra" / REFERENCE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": FORMAT,
        "features": {
            name: {"boundaries": ref.boundaries.tolist(), "counts": [int(c) for c in ref.counts]}
            for name, ref in reference.items()
        },
    }
    target.write_text(json.dumps(document, indent=1))
    return target


def read_reference(version_dir: str | Path) -> dict[str, FeatureReference] | None:
    """The model's reference histograms, or None when the version carries no such file."""
    path = Path(version_dir) / "assets.extra" / REFERENCE_FILE
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text())
    except ValueError as exc:
        raise ReferenceFormatError(f"{path}: not valid JSON ({exc}); rewrite it in the {FORMAT} format") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ReferenceFormatError(f"{path}: 'format' must be {FORMAT!r}")
    features = document.get("features")
    if not isinstance(features, dict):
        raise ReferenceFormatError(f"{path}: 'features' must be an object of feature name to histogram")
    reference = {}
    for name, histogram in features.items():
        try:
            boundaries = np.asarray(histogram["boundaries"], dtype=np.float64)
            counts = np.asarray(histogram["counts"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReferenceFormatError(f"{path}: feature {name!r} needs numeric 'boundaries' and 'counts'") from exc
        if boundaries.ndim != 1 or counts.ndim != 1 or len(counts) != len(boundaries) + 1:
            raise ReferenceFormatError(
                f"{path}: feature {name!r} has {len(counts)} counts for {len(boundaries)} boundaries; "
                "counts must be one longer than boundaries"
            )
        if np.any(np.diff(boundaries) <= 0) or np.any(counts < 0):
            raise ReferenceFormatError(f"{path}: feature {name!r} needs increasing boundaries and counts >= 0")
        reference[name] = FeatureReference(boundaries, counts)
    return reference


def psi(expected_shares: np.ndarray, observed_counts: np.ndarray) -> float:
    total = float(observed_counts.sum())
    if total == 0:
        return 0.0
    p = np.maximum(observed_counts / total, _FLOOR)
    q = np.maximum(expected_shares, _FLOOR)
    return float(np.sum((p - q) * np.log(p / q)))


@dataclass
class DriftMonitor:
    """Counts served feature values into the reference buckets of one model version."""

    reference: dict[str, FeatureReference]
    observed: dict[str, np.ndarray] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for name, ref in self.reference.items():
            self.observed[name] = np.zeros(len(ref.counts), dtype=np.int64)
            self.sums[name] = 0.0

    pending: list[Mapping[str, np.ndarray]] = field(default_factory=list)
    pending_rows: int = 0
    FLUSH_ROWS = 4096  # bucket in bulk: one searchsorted per feature per few thousand rows, not per request

    def observe(self, columns: Mapping[str, np.ndarray]) -> None:
        """Queue the values; they are bucketed in bulk when enough have arrived or when read."""
        matrix = getattr(columns, "matrix", None)  # StackedInputs: the rows without a view per input
        rows = (int(np.prod(matrix.shape[1:])) if matrix is not None
                else max((np.size(v) for v in columns.values()), default=0))
        with self._lock:
            self.pending.append(columns)
            self.pending_rows += rows
            if self.pending_rows < self.FLUSH_ROWS:
                return
            batch, self.pending, self.pending_rows = self.pending, [], 0
        self._count(batch)

    def _count(self, batch: list[Mapping[str, np.ndarray]]) -> None:
        if not batch:
            return
        from serving.protocol.tensors import StackedInputs

        stacked: dict[tuple[str, ...], list[np.ndarray]] = {}
        plain = []
        for columns in batch:
            if type(columns) is StackedInputs:
                stacked.setdefault(columns.aliases, []).append(columns.matrix)
            else:
                plain.append(columns)
        # inputs that arrived as one array: one concatenation per alias order, then one row per feature
        merged = [StackedInputs(np.concatenate(matrices, axis=1), aliases) for aliases, matrices in stacked.items()]
        batch = merged + plain
        for name, ref in self.reference.items():
            parts = [columns[name] for columns in batch if name in columns]
            if not parts:
                continue
            # one flattening concatenation and one cast per feature, not one per request (thousands per flush)
            arrays = parts if all(isinstance(part, np.ndarray) for part in parts) else [np.asarray(p) for p in parts]
            values = np.concatenate(arrays, axis=None).astype(np.float64, copy=False)
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            counts = np.bincount(np.searchsorted(ref.boundaries, values, side="right"), minlength=len(ref.counts))
            with self._lock:
                self.observed[name] += counts
                self.sums[name] += float(values.sum())

    def flush(self) -> None:
        with self._lock:
            batch, self.pending, self.pending_rows = self.pending, [], 0
        self._count(batch)

    def observe_examples(self, serialized: np.ndarray) -> None:
        """Feature values out of serialized tf.Example protos (float and int features)."""
        from tensorflow.core.example import example_pb2

        columns: dict[str, list[float]] = {}
        for record in np.asarray(serialized, dtype=object).ravel():
            example = example_pb2.Example()
            try:
                example.ParseFromString(record)
            except Exception:  # noqa: BLE001 - a bad record fails the request elsewhere, not here
                continue
            for name, feature in example.features.feature.items():
                if name in self.reference:
                    kind = feature.WhichOneof("kind")
                    if kind == "float_list":
                        columns.setdefault(name, []).extend(feature.float_list.value)
                    elif kind == "int64_list":
                        columns.setdefault(name, []).extend(feature.int64_list.value)
        self.observe({name: np.asarray(values) for name, values in columns.items()})

    def snapshot(self) -> dict[str, tuple[FeatureReference, np.ndarray, float]]:
        self.flush()
        with self._lock:
            return {name: (self.reference[name], self.observed[name].copy(), self.sums[name])
                    for name in self.reference}

    def scores(self) -> dict[str, float]:
        return {name: psi(ref.shares, observed) for name, (ref, observed, _) in self.snapshot().items()}


def format_boundary(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))
