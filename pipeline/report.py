"""What a pipeline run did, read from MLMD alone: per-component time and cache hits, the time split's
windows, AUC, blessing, push. The reading is the evidence room's (lineage, the Evaluator's results, the
components' records); this module picks the run's facts and words them for `esteira run`, `esteira report`
and the deploy gate."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2 as mpb

from evidence import evaluation, lineage, records
from evidence.evaluation import fraud_metric_names
from evidence.fairness import AttributeFairness, gap_metric_name, is_gap_bound, read_fairness


@dataclass(frozen=True)
class RunReport:
    run_id: str
    executions: list[lineage.NodeExecution]
    metrics: dict[str, float] = field(default_factory=dict)
    blessed: bool | None = None
    blessing_failures: list[str] = field(default_factory=list)
    pushed: bool | None = None
    push_reason: str = ""
    version: str = ""
    destination: str = ""
    training: dict[str, float | int | str] = field(default_factory=dict)
    gate: PromotionGate | None = None  # the Evaluator's promotion gate, on whichever metric it judges
    data_validation: dict[str, float | int | str] = field(default_factory=dict)
    model_validation: dict[str, float | int | str] = field(default_factory=dict)
    optimization: dict = field(default_factory=dict)  # the ModelOptimizer's table, verdicts and publish reason
    time_split: dict[str, int | str] = field(default_factory=dict)  # windows' dates, spans and counts
    fairness: list[AttributeFairness] = field(default_factory=list)  # per protected attribute (evidence/fairness.py)

    @property
    def failed(self) -> list[str]:
        return [e.node for e in self.executions if e.state not in ("COMPLETE", "CACHED")]

    @property
    def cached(self) -> list[str]:
        return [e.node for e in self.executions if e.state == "CACHED"]


@dataclass(frozen=True)
class PromotionGate:
    """The promotion gate's metric, values and thresholds, as the Evaluator applied them."""

    metric: str
    value: float
    lower_bound: float | None
    baseline: float | None = None
    change: float | None = None
    change_threshold: float | None = None
    relative_change: float | None = None
    relative_threshold: float | None = None

    @property
    def label(self) -> str:
        return metric_label(self.metric)

    def verdicts(self) -> list[tuple[str, bool]]:
        """Each check as (description, passed); change checks only exist once a baseline is blessed."""
        checks = []
        if self.lower_bound is not None:
            checks.append((f"{self.label} {self.value:.4f} vs floor {self.lower_bound:g}",
                           self.value >= self.lower_bound))
        if self.change is not None and self.change_threshold is not None:
            checks.append((f"change {self.change:+.4f} vs allowed {self.change_threshold:+g}",
                           self.change >= self.change_threshold))
        if self.relative_change is not None and self.relative_threshold is not None:
            checks.append((f"relative change {self.relative_change:+.2%} vs required {self.relative_threshold:+.2%}",
                           self.relative_change >= self.relative_threshold))
        return checks


def metric_label(name: str) -> str:
    """How reports name a metric: AUC for auc, the TFMA name otherwise."""
    return "AUC" if name == "auc" else name


def format_metric(name: str, metrics: dict[str, float]) -> str:
    """'card_precision_at_100 0.2900' or, where a day had fewer cards than k, why the value is undefined."""
    value = metrics[name]
    if name.startswith("card_precision_at_") and value != value:  # NaN
        smallest = metrics.get("cards_in_smallest_day")
        k = name.removeprefix("card_precision_at_")
        held = f"holds {int(smallest)} cards" if smallest is not None else "holds fewer cards"
        return (f"{name} undefined (the smallest eval day {held}, fewer than evaluation.card_precision_k {k}: "
                "lower it or evaluate more cards per day)")
    return f"{name} {value:.4f}"


def gated_threshold(thresholds: list[tuple[str, Any]]) -> tuple[str, Any]:
    """The promotion gate's (metric, threshold) among the eval config's: the last one that is not a fairness
    gap's bound (evaluation.max_false_positive_rate_gap adds those after it; the fairness table reports them)."""
    gates = [(name, threshold) for name, threshold in thresholds if not is_gap_bound(name)]
    return gates[-1] if gates else ("auc", None)


def _promotion_gate(uri: str, metrics: dict[str, float], baseline: dict[str, float]) -> PromotionGate | None:
    """The gated metric and its thresholds, from the eval config the Evaluator stored beside its results."""
    name, threshold = gated_threshold(evaluation.saved_thresholds(evaluation.saved_eval_config(uri)))
    if name not in metrics:
        return None
    current, base = metrics[name], baseline.get(name)
    value = threshold.value_threshold if threshold is not None else None
    change = threshold.change_threshold if threshold is not None and threshold.HasField("change_threshold") else None
    return PromotionGate(
        metric=name, value=current,
        lower_bound=value.lower_bound.value if value is not None and value.HasField("lower_bound") else None,
        baseline=base,
        change=current - base if base is not None else None,
        change_threshold=change.absolute.value if change is not None and change.HasField("absolute") else None,
        relative_change=(current - base) / base if base else None,
        relative_threshold=change.relative.value if change is not None and change.HasField("relative") else None)


def _evaluation_metrics(uri: str, fairness: list[AttributeFairness] | None = None,
                        ) -> tuple[dict[str, float], list[str], dict[str, float]]:
    """Overall-slice metrics of the candidate model and the reasons validation failed, if it did (a refused
    false-positive-rate gap names its groups and the limit)."""
    gaps = {gap_metric_name("false_positive_rate", table.attribute): table for table in fairness or []}
    found = evaluation.evaluation_metrics(uri)
    failures = []
    for failure in evaluation.validation_failures(uri):
        table = gaps.get(failure.metric)
        text = table.gate_text() if table is not None and not failure.is_diff else _describe_failure(failure)
        failures.append(f"{text} ({failure.slice_text})")
    return (found[evaluation.CANDIDATE].get(evaluation.OVERALL, {}), failures,
            found[evaluation.BASELINE].get(evaluation.OVERALL, {}))


def _describe_failure(failure: evaluation.ThresholdFailure) -> str:
    """E.g. 'auc 0.7598 below the lower bound 0.85' or 'auc change -0.0312 below the allowed -0.01'."""
    name, value, threshold = failure.metric, failure.value, failure.threshold
    if failure.is_diff:
        change = threshold.change_threshold
        if change.HasField("relative") and not change.HasField("absolute"):
            return f"{name} relative change vs the blessed baseline is below the required {change.relative.value:+.2%}"
        allowed = " and ".join(
            ([f"{change.absolute.value:+.4f} absolute"] if change.HasField("absolute") else [])
            + ([f"{change.relative.value:+.2%} relative"] if change.HasField("relative") else []))
        return f"{name} change {value:+.4f} vs the blessed baseline misses the required {allowed}"
    bounds = threshold.value_threshold
    if bounds.HasField("lower_bound") and value < bounds.lower_bound.value:
        return f"{name} {value:.4f} below the lower bound {bounds.lower_bound.value:g}"
    if bounds.HasField("upper_bound") and value > bounds.upper_bound.value:
        return f"{name} {value:.4f} above the upper bound {bounds.upper_bound.value:g}"
    return f"{name} {value:.4f} failed {failure.message or 'its threshold'}"


def build_report(store: mlmd.MetadataStore, pipeline_name: str, run_id: str | None = None) -> RunReport:
    run_id = run_id or lineage.latest_run_id(store, pipeline_name)
    executions = lineage.run_executions(store, run_id)
    by_node = {execution.node: execution for execution in executions}

    def output(node: str, key: str) -> mpb.Artifact | None:
        """The first ``key`` output of the run's ``node``, when that node completed (or was cached)."""
        execution = by_node.get(node)
        if execution is None or execution.state not in ("COMPLETE", "CACHED"):
            return None
        outputs = lineage.output_artifacts(store, execution.execution_id, key)
        return outputs[0] if outputs else None

    values: dict = {}
    if (examples := output("AnonymizingExampleGen", "examples")) is not None:
        values["time_split"] = records.time_split(examples)
    if (evaluated := output("Evaluator", "evaluation")) is not None:
        values["fairness"] = read_fairness(evaluated.uri)
        values["metrics"], values["blessing_failures"], baseline = _evaluation_metrics(evaluated.uri,
                                                                                       values["fairness"])
        values["gate"] = _promotion_gate(evaluated.uri, values["metrics"], baseline)
    if (blessing := output("Evaluator", "blessing")) is not None:
        values["blessed"] = records.blessed(blessing)
    if (model := output("Trainer", "model")) is not None:
        values["training"] = records.training_record(model)
    if (anomalies := output("ExampleValidator", "anomalies")) is not None:
        values["data_validation"] = records.scalars(anomalies)
    if (validation := output("ModelValidator", "blessing")) is not None:
        values["model_validation"] = records.scalars(validation)
    if (optimized := output("ModelOptimizer", "optimized_model")) is not None:
        values["optimization"] = records.optimization(optimized)
    if (pushed := output("Pusher", "pushed_model")) is not None:
        push = records.PushRecord.of(pushed)
        values.update(pushed=push.pushed, push_reason=push.reason, version=push.version,
                      destination=push.destination)
    return RunReport(run_id=run_id, executions=executions, **values)


def load_report(metadata_path: Path, pipeline_name: str) -> RunReport:
    return build_report(lineage.open_store(metadata_path), pipeline_name)


def format_time_split(facts: dict[str, int | str]) -> list[str]:
    """Both windows' dates, spans and counts, the delay skipped between them and the history read."""
    if not facts:
        return []

    def window(name: str) -> str:
        return (f"{facts.get(f'{name}_first_date', '?')} .. {facts.get(f'{name}_last_date', '?')} "
                f"(spans {facts.get(f'{name}_first_span', '?')}-{facts.get(f'{name}_last_span', '?')})")

    lines = ["time split (out of time):",
             f"  train {window('train')}: {facts.get('train_rows', 0)} rows, {facts.get('train_frauds', 0)} frauds"]
    if "delay_first_date" in facts:
        lines.append(f"  delay {window('delay')}: skipped, labels not known yet (context only)")
    lines.append(f"  eval  {window('eval')}: {facts.get('eval_rows', 0)} rows, {facts.get('eval_frauds', 0)} frauds, "
                 f"{facts.get('eval_known_compromised_rows', 0)} rows of cards already known compromised removed")
    if "history_first_date" in facts:
        lines.append(f"  history {window('history')}: context for windows and card histories")
    return lines


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_fairness(tables: list[AttributeFairness]) -> list[str]:
    """Per protected attribute: each group's rates and AP, the largest gaps, and the gap gate's verdict."""
    lines = []
    for table in tables:
        lines.append(f"fairness by {table.attribute} (eval split, alert above {table.threshold:g}):")
        for group in table.groups:
            lines.append(f"  {group.group}: FPR {_figure(group.false_positive_rate)}, "
                         f"FNR {_figure(group.false_negative_rate)}, AP {_figure(group.average_precision)} "
                         f"({group.examples} examples, {group.positives} positive)")
        for figure, gap in table.gaps.items():
            lines.append(f"  largest {figure} gap: {gap.describe(table.by_group)}")
        if table.max_false_positive_rate_gap is not None:
            lines.append(f"  gate: {table.gate_text()}: {'pass' if table.gate_passed else 'FAIL'}")
    return lines


def format_report(report: RunReport, serving_base: Path, wall_seconds: float | None = None) -> str:
    lines = [f"run {report.run_id}"]
    width = max((len(e.node) for e in report.executions), default=10)
    for execution in report.executions:
        lines.append(f"  {execution.node:<{width}}  {execution.state.lower():<8}  {execution.seconds:7.1f} s")
    total = sum(e.seconds for e in report.executions)
    lines.append(f"  {'components total':<{width}}  {'':<8}  {total:7.1f} s"
                 + (f"   (pipeline wall clock: {wall_seconds:.1f} s)" if wall_seconds else ""))
    if report.cached:
        lines.append(f"cache hits: {len(report.cached)} of {len(report.executions)} "
                     f"({', '.join(report.cached)})")
    lines.extend(format_time_split(report.time_split))
    if report.training:
        facts = report.training
        line = (f"training: {facts.get('steps', '?')} steps, {facts.get('epochs', '?')} epoch(s), "
                f"{facts.get('strategy', 'none')} x{facts.get('num_replicas', 1)}, seed {facts.get('seed', '?')}")
        if facts.get("resumed_from_epoch"):
            line += f", resumed after epoch {facts['resumed_from_epoch']}"
        if facts.get("dp"):
            line += (f"; DP-SGD epsilon {facts.get('dp_epsilon', float('nan')):.3f} at delta {facts.get('dp_delta')}"
                     f" ({facts.get('dp_accountant')}, noise {facts.get('dp_noise_multiplier')}, "
                     f"clip {facts.get('dp_l2_norm_clip')})")
        lines.append(line)
    if "auc" in report.metrics:
        names = ["auc_precision_recall", "average_precision", "binary_accuracy", "precision", "recall",
                 *sorted(name for name in report.metrics if name.startswith("recall_at_fpr_"))]
        extras = ", ".join(f"{name} {report.metrics[name]:.4f}" for name in names if name in report.metrics)
        count = int(report.metrics.get("example_count", 0))
        lines.append(f"eval AUC {report.metrics['auc']:.4f} on {count} examples ({extras})")
    budgets = [name for name in fraud_metric_names(report.metrics) if name.endswith("_alerts_per_day")
               or name.startswith("card_precision_at_")]
    if budgets:
        lines.append("per-day budgets: " + ", ".join(format_metric(name, report.metrics) for name in budgets))
    if report.gate is not None:
        checks = report.gate.verdicts()
        if report.gate.baseline is not None:
            lines.append(f"promotion gate on {report.gate.label}: baseline {report.gate.baseline:.4f} "
                         "(latest blessed model)")
        else:
            lines.append(f"promotion gate on {report.gate.label}: no blessed baseline yet (change thresholds "
                         "apply from the next run)")
        lines.extend(f"  {text}: {'pass' if passed else 'FAIL'}" for text, passed in checks)
    lines.extend(format_fairness(report.fairness))
    if report.data_validation:
        facts = report.data_validation
        previous = int(facts.get("previous_span", -1))
        lines.append(f"data validation: {int(facts.get('anomaly_count', 0))} anomalies "
                     f"(on_anomaly {facts.get('on_anomaly', '?')}; "
                     + (f"drift checked against the previous statistics, span {previous})" if previous >= 0
                        else "no previous statistics compared)"))
    if report.model_validation:
        facts = report.model_validation
        if facts.get("blessed") == 1:
            lines.append(f"model validation: passed — Predict p95 {facts.get('latency_p95_ms', float('nan')):.1f} ms "
                         f"(budget {facts.get('latency_budget_ms', float('nan')):g} ms) over "
                         f"{facts.get('requests', 0)} requests, signatures {facts.get('signatures', '?')} agree "
                         f"within {facts.get('max_signature_difference', float('nan')):.2g}, weights finite")
        else:
            lines.append(f"model validation: FAILED — {facts.get('reasons') or 'see the ModelValidator log'}")
    if report.optimization:
        lines.append(f"TFLite optimization: {report.optimization['publish_reason']}")
        if report.optimization.get("rows"):
            from optimization.optimize import format_table

            lines.extend(f"  {line}" for line in format_table(report.optimization).splitlines())
    if report.blessed is not None:
        lines.append("blessed: yes" if report.blessed else
                     "blessed: no — " + ("; ".join(report.blessing_failures) or "validation failed"))
    if report.pushed:
        lines.append(f"pushed: version {report.version} at {report.destination}")
    elif report.pushed is False:
        where = f" (serving {serving_base / report.version})" if report.version else ""
        lines.append(f"pushed: no — {report.push_reason or 'not blessed'}{where}")
    if report.failed:
        lines.append(f"FAILED: {', '.join(report.failed)}")
    return "\n".join(lines)
