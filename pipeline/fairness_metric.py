"""The fairness table of one protected attribute as a TFMA metric, so the Evaluator computes it, writes it
to the evaluation artifact and gates on its false-positive-rate gap before the Pusher.

Loaded by module path: ``tfma.MetricConfig(class_name="ProtectedGroupGaps", module="pipeline.fairness_metric",
config='{"attribute": "age_band", "threshold": 0.5}')``. It records, per model and slice,
``false_positive_rate_gap_<attribute>`` (the gated number), ``false_negative_rate_gap_<attribute>``,
``average_precision_gap_<attribute>`` and ``fairness_<attribute>``, the whole table as JSON
(evidence/fairness.py). The rows (group, label, score) are kept per slice, about 20 bytes an eval example.
"""
from __future__ import annotations

import array
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2
from tensorflow_model_analysis.utils import util

from errors import EsteiraError
from evidence.fairness import gap_metric_name, table_metric_name
from pipeline import fairness


class FairnessMetricError(EsteiraError, ValueError):
    """Input the fairness metric cannot use (the message names the problem and the fix)."""


class _Rows:
    __slots__ = ["groups", "labels", "scores", "skipped"]

    def __init__(self) -> None:
        self.groups: list[str] = []
        self.labels = array.array("d")
        self.scores = array.array("d")
        self.skipped = 0


class _GroupRowsCombiner(beam.CombineFn):
    """Collects (group, label, score) of every example of a slice that has a value for the attribute."""

    def __init__(self, key: metric_types.MetricKey, eval_config: config_pb2.EvalConfig | None, attribute: str) -> None:
        self._key = key
        self._eval_config = eval_config
        self._attribute = attribute

    def create_accumulator(self) -> _Rows:
        return _Rows()

    def add_input(self, accumulator: _Rows, element: metric_types.StandardMetricInputs) -> _Rows:
        values = list(metric_util.to_label_prediction_example_weight(
            element, eval_config=self._eval_config, model_name=self._key.model_name,
            output_name=self._key.output_name, example_weighted=False, flatten=True))
        if len(values) != 1:
            raise FairnessMetricError(
                f"the fairness figures need one score per example, got {len(values)}: evaluate a binary model "
                "whose prediction_key names a single probability")
        value = util.get_by_keys(element.features or {}, [self._attribute], optional=True)
        flat = None if value is None else np.asarray(value).reshape(-1)
        if flat is None or flat.size == 0:
            accumulator.skipped += 1
            return accumulator
        if flat.size != 1:
            raise FairnessMetricError(
                f"governance.protected_attributes: '{self._attribute}' holds {flat.size} values in an eval example; "
                "name a column with one value per example")
        group = flat[0].item() if isinstance(flat[0], np.generic) else flat[0]
        label, score, _ = values[0]
        accumulator.groups.append(group.decode() if isinstance(group, bytes) else str(group))
        accumulator.labels.append(float(np.asarray(label).reshape(-1)[0]))
        accumulator.scores.append(float(np.asarray(score).reshape(-1)[0]))
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[_Rows]) -> _Rows:
        accumulators = iter(accumulators)
        result = next(accumulators)
        for other in accumulators:
            result.groups.extend(other.groups)
            result.labels.extend(other.labels)
            result.scores.extend(other.scores)
            result.skipped += other.skipped
        return result

    def extract_output(self, accumulator: _Rows) -> dict[metric_types.MetricKey, _Rows]:
        # Beam delivers rows in any order: sort them so the bootstrap draws the same replicates every run.
        order = sorted(range(len(accumulator.groups)), key=lambda i: (accumulator.groups[i], accumulator.labels[i],
                                                                       accumulator.scores[i]))
        rows = _Rows()
        rows.groups = [accumulator.groups[i] for i in order]
        rows.labels.extend(accumulator.labels[i] for i in order)
        rows.scores.extend(accumulator.scores[i] for i in order)
        rows.skipped = accumulator.skipped
        return {self._key: rows}


class ProtectedGroupGaps(metric_types.Metric):
    """Per group of ``attribute``: false-positive and false-negative rates at ``threshold`` and average
    precision; per figure the largest gap between groups with a bootstrap interval (pipeline/fairness.py)."""

    def __init__(self, attribute: str = "", threshold: float = 0.5, replicates: int = fairness.REPLICATES,
                 seed: int = fairness.SEED, name: str | None = None) -> None:
        if not attribute:
            raise FairnessMetricError("ProtectedGroupGaps needs attribute, a column of the eval examples "
                                      "(governance.protected_attributes)")
        self._attribute = attribute
        super().__init__(_protected_group_gaps, attribute=attribute, threshold=threshold, replicates=replicates,
                         seed=seed, name=name)

    def _default_name(self) -> str:
        return gap_metric_name("false_positive_rate", self._attribute)


def _protected_group_gaps(attribute: str, threshold: float, replicates: int, seed: int, name: str | None = None,
                          eval_config: config_pb2.EvalConfig | None = None, model_names: list[str] | None = None,
                          output_names: list[str] | None = None,
                          example_weighted: bool = False) -> metric_types.MetricComputations:
    if example_weighted:
        raise FairnessMetricError("the fairness figures are unweighted: remove example_weights from the metrics "
                                  "spec that holds ProtectedGroupGaps")
    names = {figure: gap_metric_name(figure, attribute) for figure in fairness.FIGURES}
    names["false_positive_rate"] = name or names["false_positive_rate"]
    table_name = table_metric_name(attribute)
    computations: metric_types.MetricComputations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            rows_key = metric_types.MetricKey(name=f"_fairness_rows_{attribute}", model_name=model_name,
                                              output_name=output_name)
            keys = {figure: metric_types.MetricKey(name=metric_name, model_name=model_name, output_name=output_name)
                    for figure, metric_name in names.items()}
            table_key = metric_types.MetricKey(name=table_name, model_name=model_name, output_name=output_name)
            computations.append(metric_types.MetricComputation(
                keys=[rows_key], preprocessors=[metric_types.FeaturePreprocessor(feature_keys=[attribute])],
                combiner=_GroupRowsCombiner(rows_key, eval_config, attribute)))

            def result(slice_metrics: dict, rows_key: metric_types.MetricKey = rows_key,
                       keys: dict[str, metric_types.MetricKey] = keys,
                       table_key: metric_types.MetricKey = table_key) -> dict:
                rows: _Rows = slice_metrics[rows_key]
                table = fairness.group_fairness(
                    attribute, rows.groups, np.frombuffer(rows.labels, dtype=np.float64),
                    np.frombuffer(rows.scores, dtype=np.float64), threshold, replicates, seed, rows.skipped)
                values: dict[Any, Any] = {
                    key: float("nan") if table.gaps[figure].value is None else table.gaps[figure].value
                    for figure, key in keys.items()}
                values[table_key] = table.to_json()
                return values

            computations.append(metric_types.DerivedMetricComputation(
                keys=[*keys.values(), table_key], result=result))
    return computations

