"""The Evaluator's results as TFMA wrote them, parsed here and nowhere else: metric values per model role
and slice, the tables stored as bytes (fairness), the validation result's failed thresholds, the eval
config saved beside them, and the thresholds the Evaluator's execution declared.

The run report, the governance reports, the fairness tables and the MLflow logger all read TFMA's output
through these functions, so a metric has one name and one value wherever it is shown. TFMA is imported
when a function is called: importing this module costs nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2

CANDIDATE = "candidate"
BASELINE = "baseline"
DIFF = "diff"  # candidate minus baseline, as TFMA computes it when a baseline model is given
OVERALL = ""  # the slice name of the whole eval split

FRAUD_METRIC_PREFIXES = ("average_precision", "card_precision_at_", "recall_at_fpr_")  # the fraud team's metrics
SliceValue = str | int | float
Slice = tuple[tuple[str, SliceValue], ...]


def _slice(slice_key: metrics_for_slice_pb2.SliceKey) -> Slice:
    return tuple((key.column, key.bytes_value.decode() if key.HasField("bytes_value") else (
        key.int64_value if key.HasField("int64_value") else key.float_value)) for key in slice_key.single_slice_keys)


def slice_name(where: Slice) -> str:
    """'category_c' for the slice category=c, '' (OVERALL) for the whole split: the MLflow key's form."""
    return "_".join(f"{column}_{value}" for column, value in where)


def evaluation_metrics(uri: str) -> dict[str, dict[str, dict[str, float]]]:
    """{'candidate'|'baseline'|'diff': {slice ('' = overall): {metric: value}}}: every number TFMA wrote
    (tables stored as bytes are in :func:`metric_tables`)."""
    import tensorflow_model_analysis as tfma

    found: dict[str, dict[str, dict[str, float]]] = {CANDIDATE: {}, BASELINE: {}, DIFF: {}}
    for per_slice in tfma.load_metrics(uri):
        where = slice_name(_slice(per_slice.slice_key))
        for item in per_slice.metric_keys_and_values:
            if item.key.HasField("sub_key") or not item.value.HasField("double_value"):
                continue
            role = DIFF if item.key.is_diff else (BASELINE if item.key.model_name == BASELINE else CANDIDATE)
            found[role].setdefault(where, {})[item.key.name] = item.value.double_value.value
    return found


def metric_tables(uri: str, prefix: str = "") -> dict[str, bytes]:
    """The candidate's bytes-valued metrics of the overall slice whose name starts with ``prefix`` (a metric
    that records a whole table, such as the fairness table of a protected attribute, as JSON)."""
    import tensorflow_model_analysis as tfma

    tables: dict[str, bytes] = {}
    for per_slice in tfma.load_metrics(uri):
        if per_slice.slice_key.single_slice_keys:
            continue
        for item in per_slice.metric_keys_and_values:
            if (item.key.model_name in ("", CANDIDATE) and not item.key.is_diff
                    and item.key.name.startswith(prefix) and item.value.HasField("bytes_value")):
                tables[item.key.name] = item.value.bytes_value
    return tables


@dataclass(frozen=True)
class ThresholdFailure:
    """One threshold TFMA's validation refused: the metric, its value, the threshold and the slice."""

    metric: str
    is_diff: bool  # a change threshold against the baseline
    value: float
    threshold: config_pb2.MetricThreshold
    message: str
    where: Slice

    @property
    def slice_name(self) -> str:
        """'overall' or the MLflow form of the slice (category_c)."""
        return slice_name(self.where) or "overall"

    @property
    def slice_text(self) -> str:
        """'overall' or the slice as people read it (category=c)."""
        return ", ".join(f"{column}={value}" for column, value in self.where) or "overall"


def validation_failures(uri: str) -> list[ThresholdFailure]:
    """Every failed threshold of TFMA's validation result, slice by slice (empty: the model passed)."""
    import tensorflow_model_analysis as tfma

    return [ThresholdFailure(failure.metric_key.name, failure.metric_key.is_diff,
                             failure.metric_value.double_value.value, failure.metric_threshold, failure.message,
                             _slice(per_slice.slice_key))
            for per_slice in tfma.load_validation_result(uri).metric_validations_per_slice
            for failure in per_slice.failures]


def saved_eval_config(uri: str) -> config_pb2.EvalConfig | None:
    """The eval config TFMA stored beside its results (TFMA drops change thresholds while no baseline exists:
    what the Evaluator was asked is in :func:`declared_thresholds`)."""
    from tensorflow_model_analysis.writers.eval_config_writer import load_eval_run

    return load_eval_run(uri)[0]


def metric_config_name(metric: config_pb2.MetricConfig) -> str:
    """The name TFMA records a MetricConfig's value under, as TFMA itself derives it."""
    from tensorflow_model_analysis.metrics import metric_specs

    return metric_specs.metric_instance(metric).name


def saved_thresholds(eval_config: config_pb2.EvalConfig | None) -> list[tuple[str, config_pb2.MetricThreshold]]:
    """(metric name, threshold) for every threshold of a saved eval config, in the config's order: a metric's
    per-slice thresholds, then its own."""
    found = []
    for spec in eval_config.metrics_specs if eval_config else []:
        for metric in spec.metrics:
            if not (metric.per_slice_thresholds or metric.HasField("threshold")):
                continue
            name = _name(metric)
            found += [(name, per_slice.threshold) for per_slice in metric.per_slice_thresholds]
            if metric.HasField("threshold"):
                found.append((name, metric.threshold))
    return found


def declared_thresholds(eval_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Metric name -> its MetricThreshold on the overall slice as JSON, from the eval config the Evaluator's
    execution records (its ``eval_config`` property, change thresholds included before a baseline exists)."""
    from tensorflow_model_analysis.proto import config_pb2

    result: dict[str, dict[str, Any]] = {}
    for spec in eval_config.get("metrics_specs", []):
        for metric in spec.get("metrics", []):
            thresholds = [metric["threshold"]] if "threshold" in metric else [
                item["threshold"] for item in metric.get("per_slice_thresholds", [])
                if any(not s.get("feature_keys") and not s.get("feature_values")
                       for s in item.get("slicing_specs", [{}]))]
            if thresholds:
                config = config_pb2.MetricConfig(class_name=metric["class_name"], module=metric.get("module", ""),
                                                 config=metric.get("config") or "")
                result[_name(config)] = thresholds[0]
    return result


def _name(metric: config_pb2.MetricConfig) -> str:
    """The configured name, else TFMA's (which builds the metric, importing its module)."""
    return json.loads(metric.config or "{}").get("name") or metric_config_name(metric)


def fraud_metric_names(metrics: dict[str, float]) -> list[str]:
    """The fraud team's metrics present in a run, in a fixed order: AP, CP@k, recall at FPR and at budgets."""
    return sorted((name for name in metrics if name.startswith(FRAUD_METRIC_PREFIXES)
                   or (name.startswith("recall_at_") and name.endswith("_alerts_per_day"))),
                  key=lambda name: (0 if name == "average_precision" else 1 if name.startswith("card_") else
                                    2 if name.startswith("recall_at_fpr_") else 3, name))
