"""Fairness across protected groups: per group, the false-positive and false-negative rates at the decision
threshold and the average precision; per figure, the largest gap between groups with a bootstrap interval.

The Evaluator computes these (pipeline/fairness_metric.py wraps :func:`group_fairness` as a TFMA metric
and also slices on each protected attribute), so the figures live in the evaluation artifact and the
gate ``evaluation.max_false_positive_rate_gap`` refuses a model before the Pusher. TFMA's own confidence
intervals give each slice its own interval; the interval of a gap between slices needs every group's
figure in the same bootstrap replicate, which TFMA does not expose, so the replicates are drawn here from
the per-example rows.

The bootstrap resamples each group's legitimate and fraudulent examples separately with replacement
(stratified by group and label). For a rate that is a binomial draw of the group's count, so the
replicates are exact and cheap; average precision is recomputed on multinomial weights of the same strata.
A gap's interval is the percentile interval of the signed difference between the two groups it names.
A score above the threshold is an alert (TFMA's confusion-matrix convention). The table's shape, and its
reader, are the evidence room's (evidence/fairness.py).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from evidence.fairness import CONFIDENCE, AttributeFairness, Gap, GroupFigures

FIGURES = ("false_positive_rate", "false_negative_rate", "average_precision")
REPLICATES = 1000
SEED = 0


def _rate(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


@dataclass(frozen=True)
class RankedGroup:
    """A group's rows as average precision sees them: the distinct scores of its frauds, highest first (the
    only thresholds where recall moves), which of them each fraud has, and which band between them each
    legitimate row falls in (band k: scores from the k-th fraud score up to the one above; last: below all)."""

    fraud_scores: np.ndarray
    fraud_band: np.ndarray
    legit_band: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, scores: np.ndarray) -> RankedGroup:
        fraud_scores = np.unique(scores[labels == 1])[::-1]
        ascending = fraud_scores[::-1]

        def band(values: np.ndarray) -> np.ndarray:  # index of the lowest fraud score <= value, from the top
            below = np.searchsorted(ascending, values, side="right")  # fraud scores <= value
            return np.where(below > 0, fraud_scores.size - below, fraud_scores.size)

        return cls(fraud_scores, band(scores[labels == 1]), band(scores[labels == 0]))

    def average_precision(self, fraud_weights: np.ndarray, legit_band_counts: np.ndarray) -> np.ndarray:
        """AP (scikit-learn's definition, ties together) when each fraud counts ``fraud_weights[:, i]`` times
        and band k holds ``legit_band_counts[:, k]`` legitimate rows; one resample per line."""
        bands = self.fraud_scores.size
        replicates = fraud_weights.shape[0]
        gain = np.zeros((replicates, bands))
        for band in range(bands):
            gain[:, band] = fraud_weights[:, self.fraud_band == band].sum(axis=1)
        tp = np.cumsum(gain, axis=1)
        fp = np.cumsum(legit_band_counts[:, :bands], axis=1)
        positives = tp[:, -1]
        return np.sum(gain * tp / np.maximum(tp + fp, 1e-300), axis=1) / positives

    def resampled(self, replicates: int, rng: np.random.Generator) -> np.ndarray:
        """AP of ``replicates`` resamples drawing frauds and legitimate rows separately with replacement: the
        legitimate rows per band are then multinomial, so no row-level weights are ever held."""
        frauds, legit = self.fraud_band.size, self.legit_band.size
        fraud_weights = rng.multinomial(frauds, np.full(frauds, 1.0 / frauds), size=replicates).astype(np.float64)
        sizes = np.bincount(self.legit_band, minlength=self.fraud_scores.size + 1)
        legit_counts = (rng.multinomial(legit, sizes / legit, size=replicates).astype(np.float64) if legit
                        else np.zeros((replicates, sizes.size)))
        return self.average_precision(fraud_weights, legit_counts)


def _replicate_figures(labels: np.ndarray, scores: np.ndarray, threshold: float, replicates: int,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each figure of one group in every replicate (NaN where the group cannot define it)."""
    negatives, positives = labels == 0, labels == 1
    n_neg, n_pos = int(negatives.sum()), int(positives.sum())
    alerts = scores > threshold
    undefined = np.full(replicates, np.nan)
    return {
        "false_positive_rate": rng.binomial(n_neg, alerts[negatives].mean(), replicates) / n_neg if n_neg
        else undefined,
        "false_negative_rate": rng.binomial(n_pos, (~alerts[positives]).mean(), replicates) / n_pos if n_pos
        else undefined,
        "average_precision": RankedGroup.of(labels, scores).resampled(replicates, rng) if n_pos else undefined,
    }


def _largest_gap(values: Mapping[str, float | None]) -> tuple[float | None, str | None, str | None]:
    """Highest minus lowest defined value, with the groups (ties: the first group name in sorted order)."""
    defined = sorted((group, value) for group, value in values.items() if value is not None)
    if len(defined) < 2:
        return None, None, None
    high = max(defined, key=lambda item: item[1])
    low = min(defined, key=lambda item: (item[1], item[0] == high[0]))  # a tie names two groups, not one twice
    return high[1] - low[1], high[0], low[0]


def difference_interval(high: np.ndarray, low: np.ndarray) -> tuple[float, float]:
    """Percentile interval of the signed difference high - low of two groups' replicates.

    Why not the replicates' largest gap (max - min): that statistic is never below 0 and picks the most
    extreme pair afresh in every replicate, so its interval sits above the true gap, and above 0 even
    for groups drawn from one distribution. The signed difference of the pair the table names is centred
    on that pair's difference, and its interval covers 0 when the pair does not really differ.
    """
    difference = high - low
    tail = (1.0 - CONFIDENCE) / 2 * 100
    lower, upper = np.nanpercentile(difference, [tail, 100 - tail])
    return float(lower), float(upper)


def group_fairness(attribute: str, groups: Iterable[Any], labels: np.ndarray, scores: np.ndarray,
                   threshold: float, replicates: int = REPLICATES, seed: int = SEED,
                   skipped: int = 0) -> AttributeFairness:
    """The table of one attribute from per-example (group, label, score); deterministic for a seed."""
    from models.fraud.metrics import average_precision

    names = np.asarray([g.decode() if isinstance(g, bytes) else str(g) for g in groups], dtype=object)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    table: list[GroupFigures] = []
    replicated: dict[str, dict[str, np.ndarray]] = {figure: {} for figure in FIGURES}
    for group in sorted(set(names.tolist())):
        mask = names == group
        y, s = labels[mask], scores[mask]
        n_neg, n_pos = int((y == 0).sum()), int((y == 1).sum())
        alerts = s > threshold
        table.append(GroupFigures(
            group=group, examples=int(mask.sum()), negatives=n_neg, positives=n_pos,
            false_positive_rate=_rate(float(alerts[y == 0].sum()), n_neg),
            false_negative_rate=_rate(float((~alerts[y == 1]).sum()), n_pos),
            average_precision=average_precision(y, s) if n_pos else None))
        for figure, values in _replicate_figures(y, s, threshold, replicates, rng).items():
            replicated[figure][group] = values
    by_group = {row.group: row for row in table}
    gaps = {}
    for figure in FIGURES:
        value, high, low = _largest_gap({group: getattr(row, figure) for group, row in by_group.items()})
        defined = [replicated[figure][group] for group, row in by_group.items() if getattr(row, figure) is not None]
        lower = upper = None
        if value is not None and high is not None and low is not None:
            lower, upper = difference_interval(replicated[figure][high], replicated[figure][low])
        gaps[figure] = Gap(figure, value, lower, upper, high, low, len(defined))
    return AttributeFairness(attribute, threshold, replicates, table, gaps, skipped)

