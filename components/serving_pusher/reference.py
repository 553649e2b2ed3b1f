"""Training-data histograms for the model server's drift metrics, from StatisticsGen's statistics.

TFDV's quantile histogram of each numeric feature becomes the server's reference format
(serving/observability/drift.py): strictly increasing boundaries and one count per bucket.
"""
from __future__ import annotations

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

from serving.observability.drift import FeatureReference

QUANTILES = statistics_pb2.Histogram.QUANTILES
STANDARD = statistics_pb2.Histogram.STANDARD


def _histogram(feature: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.Histogram | None:
    histograms = {h.type: h for h in feature.num_stats.histograms if h.buckets}
    return histograms.get(QUANTILES) or histograms.get(STANDARD)


def feature_reference(histogram: statistics_pb2.Histogram) -> FeatureReference | None:
    """Buckets [l0,h0], [l1,h1], ... → boundaries h0, h1, ... (merged where equal) and counts."""
    boundaries: list[float] = []
    counts: list[float] = []
    for bucket in histogram.buckets:
        if counts and boundaries and bucket.high_value <= boundaries[-1]:
            counts[-1] += bucket.sample_count  # repeated quantiles of a discrete feature
            continue
        counts.append(bucket.sample_count)
        boundaries.append(bucket.high_value)
    boundaries = boundaries[:-1]  # the last bucket is open-ended: [b_k, +inf)
    if not boundaries:
        return None  # a constant feature has nothing to compare
    return FeatureReference(boundaries=np.asarray(boundaries, dtype=np.float64),
                            counts=np.rint(np.asarray(counts)).astype(np.int64))


def reference_from_statistics(statistics: statistics_pb2.DatasetFeatureStatistics,
                              features: list[str]) -> dict[str, FeatureReference]:
    """References for the named numeric features that have a usable histogram."""
    wanted = set(features)
    reference: dict[str, FeatureReference] = {}
    for feature in statistics.features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if name not in wanted or not feature.HasField("num_stats"):
            continue
        histogram = _histogram(feature)
        built = feature_reference(histogram) if histogram else None
        if built is not None:
            reference[name] = built
    return reference
