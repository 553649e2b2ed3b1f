"""Drift scores from statistics protos: same data scores 0, shifted data crosses the threshold."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2

from evidence.drift_report import DriftReport, Side, feature_drift, prediction_shift, rebin, write_drift_report


def statistics(amounts: np.ndarray, channels: dict[str, int]) -> statistics_pb2.DatasetFeatureStatistics:
    stats = statistics_pb2.DatasetFeatureStatistics(num_examples=len(amounts))
    amount = stats.features.add()
    amount.path.step.append("amount")
    histogram = amount.num_stats.histograms.add(type=statistics_pb2.Histogram.STANDARD)
    counts, edges = np.histogram(amounts, bins=10)
    for low, high, count in zip(edges[:-1], edges[1:], counts, strict=True):
        histogram.buckets.add(low_value=low, high_value=high, sample_count=count)
    channel = stats.features.add()
    channel.path.step.append("channel")
    channel.string_stats.common_stats.num_non_missing = sum(channels.values())
    channel.string_stats.common_stats.avg_num_values = 1.0
    for label, count in channels.items():
        channel.string_stats.rank_histogram.buckets.add(label=label, sample_count=count)
    return stats


def test_rebin_keeps_the_mass() -> None:
    mass = rebin([(0.0, 2.0, 10.0), (2.0, 2.0, 5.0)], np.array([0.0, 1.0, 2.0, 3.0]))
    assert mass.tolist() == [5.0, 5.0, 5.0]


def test_identical_data_does_not_drift() -> None:
    rng = np.random.default_rng(0)
    side = statistics(rng.normal(size=2000), {"web": 70, "pos": 30})
    features, notes = feature_drift(Side("v1", side), Side("v2", side))
    assert [(f.feature, round(f.score, 6), f.drifted) for f in features] == [("amount", 0.0, False),
                                                                           ("channel", 0.0, False)]
    assert notes == []


def test_shifted_data_drifts_with_the_right_metric() -> None:
    rng = np.random.default_rng(0)
    before = statistics(rng.normal(size=2000), {"web": 70, "pos": 30})
    after = statistics(rng.normal(loc=2.0, size=2000), {"web": 40, "pos": 60})
    features, _ = feature_drift(Side("v1", before), Side("v2", after))
    by_name = {f.feature: f for f in features}
    assert by_name["amount"].metric == "jensen_shannon" and by_name["amount"].score > 0.3
    assert by_name["channel"].metric == "l_infinity" and by_name["channel"].score == pytest.approx(0.3)
    assert by_name["amount"].drifted and by_name["channel"].drifted


def test_report_renders_scores_charts_and_prediction_shift(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    before = statistics(rng.normal(size=500), {"web": 70, "pos": 30})
    features, notes = feature_drift(Side("v1", before), Side("v2", before))
    shift = prediction_shift(rng.beta(1, 8, 400), rng.beta(4, 4, 400), ("v1", "v2"), "eval split")
    assert shift.drifted and shift.ks_statistic > 0.5
    report = DriftReport("fraud", "v1", "v2", "now", features, shift, notes)
    paths = write_drift_report(report, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["drifted_features"] == [] and data["predictions"]["drifted"] is True
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 3 and 'data-feature="amount"' in html


def test_excluded_features_are_named_not_scored() -> None:
    rng = np.random.default_rng(0)
    before = statistics(rng.normal(size=2000), {"web": 70, "pos": 30})
    after = statistics(rng.normal(loc=2.0, size=2000), {"web": 40, "pos": 60})
    features, notes = feature_drift(Side("v1", before), Side("v2", after), excluded={"amount": "the label",
                                                                                     "absent": "an id"})
    assert [f.feature for f in features] == ["channel"]
    assert notes == ["not scored: amount (the label)"]
