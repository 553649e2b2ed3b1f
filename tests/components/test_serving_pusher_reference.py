"""TFDV histograms become the model server's drift references."""
from __future__ import annotations

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

from components.serving_pusher.reference import feature_reference, reference_from_statistics


def histogram(kind: int, buckets: list[tuple[float, float, float]]) -> statistics_pb2.Histogram:
    return statistics_pb2.Histogram(type=kind, buckets=[
        statistics_pb2.Histogram.Bucket(low_value=low, high_value=high, sample_count=count)
        for low, high, count in buckets])


def test_buckets_become_boundaries_and_counts() -> None:
    reference = feature_reference(histogram(statistics_pb2.Histogram.QUANTILES,
                                            [(0, 1, 10), (1, 2, 10), (2, 5, 10)]))
    np.testing.assert_array_equal(reference.boundaries, [1.0, 2.0])
    np.testing.assert_array_equal(reference.counts, [10, 10, 10])


def test_repeated_quantiles_of_a_discrete_feature_are_merged() -> None:
    reference = feature_reference(histogram(statistics_pb2.Histogram.QUANTILES,
                                            [(0, 1, 5), (1, 1, 5), (1, 1, 5), (1, 3, 5)]))
    np.testing.assert_array_equal(reference.boundaries, [1.0])
    np.testing.assert_array_equal(reference.counts, [15, 5])
    assert np.all(np.diff(reference.boundaries) > 0)


def test_constant_feature_has_no_reference() -> None:
    assert feature_reference(histogram(statistics_pb2.Histogram.STANDARD, [(3, 3, 40)])) is None


def test_only_requested_numeric_features_with_quantiles_preferred() -> None:
    stats = statistics_pb2.DatasetFeatureStatistics(features=[
        statistics_pb2.FeatureNameStatistics(
            path={"step": ["amount"]},
            num_stats=statistics_pb2.NumericStatistics(histograms=[
                histogram(statistics_pb2.Histogram.STANDARD, [(0, 50, 1), (50, 100, 99)]),
                histogram(statistics_pb2.Histogram.QUANTILES, [(0, 10, 50), (10, 100, 50)])])),
        statistics_pb2.FeatureNameStatistics(
            path={"step": ["other"]},
            num_stats=statistics_pb2.NumericStatistics(histograms=[
                histogram(statistics_pb2.Histogram.STANDARD, [(0, 1, 1), (1, 2, 1)])])),
        statistics_pb2.FeatureNameStatistics(path={"step": ["category"]},
                                             string_stats=statistics_pb2.StringStatistics(unique=3)),
    ])
    reference = reference_from_statistics(stats, ["amount", "category"])
    assert set(reference) == {"amount"}
    np.testing.assert_array_equal(reference["amount"].boundaries, [10.0])
