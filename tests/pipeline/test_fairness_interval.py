"""The largest gap's bootstrap interval is honest: for groups drawn from one distribution it covers 0 about
as often as its confidence says, and for groups that really differ it excludes 0 and covers the true gap."""
from __future__ import annotations

import numpy as np

from pipeline import fairness

THRESHOLD = 0.5
DATASETS = 40


def two_groups(rng: np.random.Generator, rows: int, fpr: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Groups 'a' and 'b', 5 % frauds; a legitimate row is alerted with its group's false-positive rate."""
    groups = np.where(np.arange(rows) % 2 == 0, "a", "b")
    labels = (rng.random(rows) < 0.05).astype(np.int64)
    rate = np.where(groups == "a", fpr[0], fpr[1])
    alerted = rng.random(rows) < rate
    legit_scores = np.where(alerted, rng.uniform(0.5001, 1.0, rows), rng.uniform(0.0, 0.5, rows))
    scores = np.where(labels == 1, rng.uniform(0.3, 1.0, rows), legit_scores)
    return groups, labels, scores


def test_groups_from_one_distribution_get_an_interval_that_covers_zero() -> None:
    rng = np.random.default_rng(11)
    covered, gaps = 0, []
    for seed in range(DATASETS):
        groups, labels, scores = two_groups(rng, 800, (0.05, 0.05))
        table = fairness.group_fairness("g", groups, labels, scores, THRESHOLD, replicates=400, seed=seed)
        gap = table.false_positive_rate_gap
        assert gap.value is not None and gap.value >= 0 and gap.lower is not None and gap.upper is not None
        assert gap.lower <= gap.value <= gap.upper
        covered += gap.lower <= 0.0 <= gap.upper
        gaps.append(gap.value)
    # a 95 % interval misses 0 about 2 times in 40; the replicates' max - min never reached 0 at all
    assert covered >= DATASETS - 6, f"the interval covered 0 in only {covered} of {DATASETS} datasets"
    assert np.mean(gaps) > 0  # the observed largest gap itself is positive by construction


def test_groups_that_really_differ_get_an_interval_above_zero_around_the_true_gap() -> None:
    rng = np.random.default_rng(12)
    covered_truth = 0
    for seed in range(20):
        groups, labels, scores = two_groups(rng, 2000, (0.02, 0.10))
        gap = fairness.group_fairness("g", groups, labels, scores, THRESHOLD, replicates=400,
                                      seed=seed).false_positive_rate_gap
        assert gap.high_group == "b" and gap.low_group == "a"
        assert gap.lower is not None and gap.upper is not None and gap.lower > 0
        covered_truth += gap.lower <= 0.08 <= gap.upper
    assert covered_truth >= 16
