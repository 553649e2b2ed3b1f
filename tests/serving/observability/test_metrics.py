"""Esteira's metric families that need no server: scores, reference shares, threads."""
from __future__ import annotations

import numpy as np
from serving_helpers import metric_samples, metric_value

from serving.observability.drift import FeatureReference
from serving.observability.metrics import SCORE_BUCKETS, Registry


def _score_samples(registry: Registry) -> list[tuple[str, dict[str, str], float]]:
    """The score histogram alone: process_* samples (CPU time, memory) move between two renders."""
    text = registry.render().decode()
    return [(name, labels, value) for name in ("esteira_prediction_score_bucket", "esteira_prediction_score_sum",
                                               "esteira_prediction_score_count")
            for labels, value in metric_samples(text, name)]


def test_observe_many_matches_observe_one_by_one() -> None:
    values = np.asarray([0.0, 0.05, 0.07, 0.5, 0.99, 1.0])
    one, many = Registry(), Registry()
    for value in values:
        one.prediction_score.observe(("m", "1"), float(value))
    many.prediction_score.observe_many(("m", "1"), values)
    assert _score_samples(many) and _score_samples(one) == _score_samples(many)
    as_list = Registry()
    as_list.prediction_score.observe_many(("m", "1"), [*values.tolist(), float("nan")])  # NaN skipped
    assert _score_samples(as_list) == _score_samples(many)
    assert SCORE_BUCKETS[0] == 0.05 and SCORE_BUCKETS[-1] == 1.0 and len(SCORE_BUCKETS) == 20


class _Monitor:
    def snapshot(self):  # type: ignore[no-untyped-def]
        ref = FeatureReference(np.asarray([0.0, 1.0]), np.asarray([1, 2, 1]))
        return {"f": (ref, np.asarray([0, 0, 4]), 4.0)}


def test_reference_share_is_cumulative_on_the_served_bounds() -> None:
    registry = Registry()
    registry.track_drift("m", "1", _Monitor())
    text = registry.render().decode()
    shares = {labels["le"]: value for labels, value in metric_samples(text, "esteira_input_feature_reference_share")}
    served = {labels["le"] for labels, _ in metric_samples(text, "esteira_input_feature_value_bucket")}
    assert shares == {"0.0": 0.25, "1.0": 0.75, "+Inf": 1.0} and set(shares) == served


def test_process_threads_exported() -> None:
    threads = metric_value(Registry().render().decode(), "process_threads")
    assert threads is not None and threads >= 1
