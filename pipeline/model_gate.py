"""The deploy gate CI runs after a pipeline run: may this run's model go out?

It fails when a component failed, the Evaluator or the ModelValidator did not bless the model, the
Pusher published nothing, the published weights hold a NaN or an infinity, or the candidate's value of
the gated metric (AUC, or evaluation.gate.metric, e.g. average precision) does not beat the champion's
(TFMA's blessed baseline, evaluated on the same eval split) by `evaluation.champion_auc_margin` (or
`evaluation.gate.champion_margin`), or a protected attribute's false-positive-rate gap is above
`evaluation.max_false_positive_rate_gap` (the reason names the gap, the groups and the limit). The facts
come from MLMD (pipeline/report.py) and the pushed SavedModel itself; the verdict and the run's drift and
LGPD reports go to one folder CI attaches.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evidence.evaluation import fraud_metric_names
from evidence.fairness import AttributeFairness
from pipeline.report import RunReport, format_metric, metric_label

NonFiniteCheck = Callable[[Path], list[str]]


@dataclass(frozen=True)
class GateFacts:
    """What the gate decides on, read from one pipeline run."""

    run_id: str
    failed_components: list[str] = field(default_factory=list)
    blessed: bool | None = None
    blessing_failures: list[str] = field(default_factory=list)
    model_validation_reasons: str | None = None  # None: the ModelValidator blessed the model
    pushed: bool | None = None
    push_reason: str = ""
    version: str = ""
    destination: str = ""
    non_finite_weights: list[str] = field(default_factory=list)
    metric: str = "auc"  # the metric the Evaluator's promotion gate judged
    value: float | None = None
    champion_value: float | None = None
    fraud_metrics: dict[str, float] = field(default_factory=dict)  # AP, CP@k, alert-budget recall, when reported
    # per protected attribute: the false-positive-rate gap's verdict (None: not gated) and its text
    fairness: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    reasons: list[str]
    notes: list[str]
    facts: GateFacts
    margin: float

    def to_json(self) -> str:
        return json.dumps({"passed": self.passed, "reasons": self.reasons, "notes": self.notes,
                           "margin": self.margin, "facts": asdict(self.facts)}, indent=2, sort_keys=True)


def decide(facts: GateFacts, margin: float) -> GateVerdict:
    """Every reason the model may not be deployed (none: it may)."""
    reasons: list[str] = []
    notes: list[str] = []
    if facts.failed_components:
        reasons.append(f"components did not complete: {', '.join(facts.failed_components)}")
    if facts.blessed is not True:
        why = "; ".join(facts.blessing_failures) or "no Evaluator blessing was recorded"
        reasons.append(f"the Evaluator did not bless the model: {why}")
    if facts.model_validation_reasons is not None:
        reasons.append(f"the ModelValidator did not bless the model: {facts.model_validation_reasons or 'no verdict'}")
    if facts.pushed is not True:
        reasons.append(f"nothing was pushed: {facts.push_reason or 'the Pusher did not run'}")
    if facts.non_finite_weights:
        shown = ", ".join(facts.non_finite_weights[:5]) + (" ..." if len(facts.non_finite_weights) > 5 else "")
        reasons.append(f"the pushed weights hold NaN or infinity: {shown}")
    label, value, champion = metric_label(facts.metric), facts.value, facts.champion_value
    if value is None:
        reasons.append(f"no {label} was recorded for the candidate (did the Evaluator run?)")
    elif value != value:  # NaN: e.g. Card Precision@k on a day with fewer than k cards
        reasons.append(f"{label} is undefined for the candidate: "
                       + format_metric(facts.metric, {**facts.fraud_metrics, facts.metric: value}))
    elif champion is None:
        notes.append(f"no champion yet: {label} {value:.4f} is compared with nothing")
    elif value < champion + margin:
        reasons.append(f"{label} {value:.4f} does not beat the champion's {champion:.4f} by the "
                       f"margin {margin:g} (needs >= {champion + margin:.4f})")
    else:
        notes.append(f"{label} {value:.4f} beats the champion's {champion:.4f} by "
                     f"{value - champion:+.4f} (margin {margin:g})")
    for gap in facts.fairness:
        if gap["passed"] is False:
            reasons.append(f"fairness: {gap['text']}")
        elif gap["passed"] is True:
            notes.append(f"fairness: {gap['text']}")
        else:
            notes.append(f"fairness (not gated: no evaluation.max_false_positive_rate_gap): {gap['text']}")
    also = [name for name in fraud_metric_names(facts.fraud_metrics) if name != facts.metric]
    if also:
        notes.append("candidate also: " + ", ".join(format_metric(name, facts.fraud_metrics) for name in also))
    return GateVerdict(not reasons, reasons, notes, facts, margin)


def facts_from_report(report: RunReport, non_finite: NonFiniteCheck) -> GateFacts:
    """The gate's facts from a run report; `non_finite` inspects the pushed SavedModel's weights."""
    validation = report.model_validation
    validator_blessed = validation.get("blessed") == 1
    bad_weights = non_finite(Path(report.destination)) if report.pushed and report.destination else []
    gate = report.gate
    metric = gate.metric if gate else "auc"
    fraud = {name: report.metrics[name] for name in [*fraud_metric_names(report.metrics), "cards_in_smallest_day"]
             if name in report.metrics}
    return GateFacts(
        run_id=report.run_id, failed_components=report.failed, blessed=report.blessed,
        blessing_failures=list(report.blessing_failures),
        model_validation_reasons=None if validator_blessed else str(validation.get("reasons", "")),
        pushed=report.pushed, push_reason=report.push_reason, version=report.version,
        destination=report.destination, non_finite_weights=bad_weights, metric=metric,
        value=report.metrics.get(metric), champion_value=gate.baseline if gate else None, fraud_metrics=fraud,
        fairness=[_fairness_fact(table) for table in report.fairness])


def _fairness_fact(table: AttributeFairness) -> dict:
    gap = table.false_positive_rate_gap
    text = (table.gate_text() if table.max_false_positive_rate_gap is not None else
            f"{table.attribute} false-positive-rate gap {gap.describe(table.by_group)}")
    return {"attribute": table.attribute, "gap": gap.value, "lower": gap.lower, "upper": gap.upper,
            "high_group": gap.high_group, "low_group": gap.low_group, "limit": table.max_false_positive_rate_gap,
            "passed": table.gate_passed, "text": text}


def governance_reports(store, run_id: str) -> Path | None:  # type: ignore[no-untyped-def]
    """The folder the run's GovernanceReport wrote (drift/ and lgpd/), if it wrote one."""
    from evidence import lineage

    for execution in lineage.run_executions(store, run_id):
        if execution.node == "GovernanceReport" and execution.state in ("COMPLETE", "CACHED"):
            outputs = lineage.output_artifacts(store, execution.execution_id, "report")
            if outputs and Path(outputs[0].uri).is_dir():
                return Path(outputs[0].uri)
    return None


def write_gate(verdict: GateVerdict, reports: Path | None, out: Path) -> Path:
    """verdict.json plus a copy of the run's drift and LGPD reports, the folder CI attaches."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdict.json").write_text(verdict.to_json() + "\n")
    if reports is not None:
        for part in ("drift", "lgpd"):
            if (reports / part).is_dir():
                shutil.copytree(reports / part, out / part, dirs_exist_ok=True)
    return out / "verdict.json"
