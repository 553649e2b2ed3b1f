"""The fairness record the Evaluator leaves: per protected attribute, each group's false-positive and
false-negative rates and average precision, the largest gap of each figure with its bootstrap interval,
and the gap gate's limit; and its reader.

The figures are computed in the Evaluator (pipeline/fairness.py, as the TFMA metric of
pipeline/fairness_metric.py), which records each attribute's whole table as JSON under
``fairness_<attribute>``; this module is that record's shape and reads it back from the evaluation
artifact for the run report, the deploy gate, the LGPD report and the model card.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from evidence import evaluation

CONFIDENCE = 0.95  # of every gap's bootstrap interval


def gap_metric_name(figure: str, attribute: str) -> str:
    """E.g. false_positive_rate_gap_age_band, the name TFMA records the gap under."""
    return f"{figure}_gap_{attribute}"


GAP_BOUND_PREFIX = gap_metric_name("false_positive_rate", "")  # what evaluation.max_false_positive_rate_gap bounds


def is_gap_bound(metric: str) -> bool:
    """Whether ``metric`` is a protected attribute's false-positive-rate gap (the fairness gate's metric)."""
    return metric.startswith(GAP_BOUND_PREFIX)


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



def gap_limits(eval_config: Any) -> dict[str, float]:
    """Attribute -> the upper bound the eval config puts on its false-positive-rate gap."""
    return {name.removeprefix(GAP_BOUND_PREFIX): threshold.value_threshold.upper_bound.value
            for name, threshold in evaluation.saved_thresholds(eval_config)
            if is_gap_bound(name) and threshold.value_threshold.HasField("upper_bound")}


def read_fairness(uri: str) -> list[AttributeFairness]:
    """Every protected attribute's table the Evaluator wrote (overall slice, the candidate model), with the
    gate's limit from the eval config stored beside the results."""
    limits = gap_limits(evaluation.saved_eval_config(uri))
    tables = []
    for value in evaluation.metric_tables(uri, table_metric_name("")).values():
        table = AttributeFairness.from_dict(json.loads(value.decode()))
        tables.append(AttributeFairness(**{**table.__dict__,
                                           "max_false_positive_rate_gap": limits.get(table.attribute)}))
    return sorted(tables, key=lambda table: table.attribute)
