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
A score above the threshold is an alert (TFMA's confusion-matrix convention).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

FIGURES = ("false_positive_rate", "false_negative_rate", "average_precision")
REPLICATES = 1000
SEED = 0
CONFIDENCE = 0.95


def gap_metric_name(figure: str, attribute: str) -> str:
    """E.g. false_positive_rate_gap_age_band, the name TFMA records the gap under."""
    return f"{figure}_gap_{attribute}"


def table_metric_name(attribute: str) -> str:
    """The TFMA metric (a JSON string) holding an attribute's whole table."""
    return f"fairness_{attribute}"


@dataclass(frozen=True)
class GroupFigures:
    """One group's counts and figures; None where the group lacks the examples to define one."""

    group: str
    examples: int
    negatives: int
    positives: int
    false_positive_rate: float | None
    false_negative_rate: float | None
    average_precision: float | None


@dataclass(frozen=True)
class Gap:
    """The largest difference of one figure between groups: highest group minus lowest group.

    ``lower`` and ``upper`` bound the signed difference of those two groups (see `difference_interval`): an
    interval that reaches 0 or below says the gap may be sampling noise."""

    figure: str
    value: float | None  # None: fewer than two groups define the figure
    lower: float | None
    upper: float | None
    high_group: str | None
    low_group: str | None
    groups_compared: int

    def describe(self, groups: Mapping[str, GroupFigures]) -> str:
        """'0.0412 (18-24 0.0500 vs 65+ 0.0088; 95 % bootstrap interval [0.0201, 0.0633])'."""
        if self.value is None or self.high_group is None or self.low_group is None:
            return f"undefined (fewer than two groups define {self.figure})"
        high = getattr(groups[self.high_group], self.figure)
        low = getattr(groups[self.low_group], self.figure)
        return (f"{self.value:.4f} ({self.high_group} {high:.4f} vs {self.low_group} {low:.4f}; "
                f"{CONFIDENCE * 100:g} % bootstrap interval [{self.lower:.4f}, {self.upper:.4f}])")


@dataclass(frozen=True)
class AttributeFairness:
    """The fairness table of one protected attribute on the eval split."""

    attribute: str
    threshold: float
    replicates: int
    groups: list[GroupFigures]
    gaps: dict[str, Gap]
    skipped: int = 0  # examples without a value for the attribute (not in any group)
    max_false_positive_rate_gap: float | None = field(default=None)  # the gate's limit, when configured

    @property
    def by_group(self) -> dict[str, GroupFigures]:
        return {figures.group: figures for figures in self.groups}

    @property
    def false_positive_rate_gap(self) -> Gap:
        return self.gaps["false_positive_rate"]

    @property
    def gate_passed(self) -> bool | None:
        """None without a limit; an undefined gap cannot show the limit holds, so it fails (as TFMA judges NaN)."""
        limit = self.max_false_positive_rate_gap
        if limit is None:
            return None
        gap = self.false_positive_rate_gap.value
        return gap is not None and gap <= limit

    def gate_text(self) -> str:
        """The gate's verdict naming the gap, the groups and the limit."""
        gap = self.false_positive_rate_gap
        limit = self.max_false_positive_rate_gap
        verdict = "within" if self.gate_passed else "above" if gap.value is not None else "cannot be checked against"
        return (f"{self.attribute} false-positive-rate gap {gap.describe(self.by_group)} {verdict} the limit "
                f"{limit:g} (evaluation.max_false_positive_rate_gap)")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def report_facts(self) -> dict[str, Any]:
        """Plain data for the LGPD report and model card (privacy/compliance.py), with the sentences they print."""
        data = asdict(self)
        for figure, gap in self.gaps.items():
            data["gaps"][figure]["text"] = gap.describe(self.by_group)
        data["gate_passed"] = self.gate_passed
        data["gate_text"] = self.gate_text() if self.max_false_positive_rate_gap is not None else ""
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttributeFairness:
        return cls(attribute=data["attribute"], threshold=data["threshold"], replicates=data["replicates"],
                   groups=[GroupFigures(**group) for group in data["groups"]],
                   gaps={name: Gap(**gap) for name, gap in data["gaps"].items()}, skipped=data.get("skipped", 0),
                   max_false_positive_rate_gap=data.get("max_false_positive_rate_gap"))


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


# ---- reading the Evaluator's output -------------------------------------------------------------------

def gap_limits(eval_config: Any) -> dict[str, float]:
    """Attribute -> the upper bound the eval config puts on its false-positive-rate gap."""
    prefix = gap_metric_name("false_positive_rate", "")
    limits = {}
    for spec in eval_config.metrics_specs if eval_config else []:
        for metric in spec.metrics:
            if not metric.config:
                continue
            settings = json.loads(metric.config)
            name = settings.get("name", "")
            if not name.startswith(prefix):
                continue
            for per_slice in metric.per_slice_thresholds:
                bounds = per_slice.threshold.value_threshold
                if bounds.HasField("upper_bound"):
                    limits[name.removeprefix(prefix)] = bounds.upper_bound.value
    return limits


def read_fairness(uri: str) -> list[AttributeFairness]:
    """Every protected attribute's table the Evaluator wrote (overall slice, the candidate model), with the
    gate's limit from the eval config stored beside the results."""
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.writers.eval_config_writer import load_eval_run

    limits = gap_limits(load_eval_run(uri)[0])
    tables = []
    for slice_metrics in tfma.load_metrics(uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue
        for item in slice_metrics.metric_keys_and_values:
            if (item.key.model_name in ("", "candidate") and not item.key.is_diff
                    and item.key.name.startswith(table_metric_name("")) and item.value.HasField("bytes_value")):
                table = AttributeFairness.from_dict(json.loads(item.value.bytes_value.decode()))
                tables.append(AttributeFairness(**{**table.__dict__,
                                                   "max_false_positive_rate_gap": limits.get(table.attribute)}))
    return sorted(tables, key=lambda table: table.attribute)
