"""The fraud metrics of models/fraud/metrics.py as TFMA metrics, so the Evaluator computes them per slice,
checks thresholds on them and writes them to the evaluation artifact (and so to MLMD) like its own.

The Evaluator loads them by module path: ``tfma.MetricConfig(class_name="CardPrecisionAtK",
module="models.fraud.tfma_metrics", config='{"k": 100, "card_key": "card_id", "time_key": "timestamp"}')``.

These metrics rank whole days, which no streaming summary does exactly, so one private combiner keeps
each example's (day, card, label, score) and the metrics are derived from those rows; metrics naming
the same card and time features share one copy. Memory grows with the eval rows, about 30 bytes plus
the card key per row, per slice and per model (candidate, baseline): a few MB at ~100k eval rows, the
size of an eval window here, and not meant for tens of millions. Metrics are unweighted, as the Fraud
Detection Handbook computes them. A day is floor(timestamp / 86400), a UTC calendar day.
"""
from __future__ import annotations

import array
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2
from tensorflow_model_analysis.utils import util

from models.fraud import metrics

DAY_SECONDS = 86_400
AVERAGE_PRECISION_NAME = "average_precision"
SMALLEST_DAY_CARDS_NAME = "cards_in_smallest_day"
_ROWS_NAME = "_fraud_rows"


def card_precision_name(k: int) -> str:
    return f"card_precision_at_{k}"


def alert_budget_recall_name(alerts_per_day: int) -> str:
    return f"recall_at_{alerts_per_day}_alerts_per_day"


@dataclass(frozen=True)
class FraudRows:
    """One slice's examples for one model, sorted by (day, card, score, label) so results do not depend
    on the order Beam delivered them in (tied scores then resolve legitimate-first, against the model)."""

    labels: np.ndarray
    scores: np.ndarray
    days: np.ndarray | None = None
    cards: np.ndarray | None = None

    def cards_per_day(self) -> dict[int, int]:
        """Distinct cards of each day."""
        assert self.days is not None and self.cards is not None
        pairs = {(int(day), card) for day, card in zip(self.days.tolist(), self.cards.tolist(), strict=True)}
        counts: dict[int, int] = {}
        for day, _ in pairs:
            counts[day] = counts.get(day, 0) + 1
        return counts


class _RowsAccumulator:
    __slots__ = ["cards", "days", "labels", "scores"]

    def __init__(self) -> None:
        self.labels = array.array("d")
        self.scores = array.array("d")
        self.days = array.array("q")
        self.cards: list[Any] = []


class _RowsCombiner(beam.CombineFn):
    """Collects (day, card, label, score) per example of a slice; see the module docstring for memory."""

    def __init__(self, key: metric_types.MetricKey, eval_config: config_pb2.EvalConfig | None,
                 card_key: str | None, time_key: str | None) -> None:
        self._key = key
        self._eval_config = eval_config
        self._card_key = card_key
        self._time_key = time_key

    def create_accumulator(self) -> _RowsAccumulator:
        return _RowsAccumulator()

    def add_input(self, accumulator: _RowsAccumulator,
                  element: metric_types.StandardMetricInputs) -> _RowsAccumulator:
        values = list(metric_util.to_label_prediction_example_weight(
            element, eval_config=self._eval_config, model_name=self._key.model_name,
            output_name=self._key.output_name, example_weighted=False, flatten=True))
        if len(values) != 1:
            raise metrics.FraudMetricError(
                f"fraud metrics need one score per example, got {len(values)}: evaluate a binary model whose "
                "prediction_key names a single probability")
        label, score, _ = values[0]
        accumulator.labels.append(float(np.asarray(label).reshape(-1)[0]))
        accumulator.scores.append(float(np.asarray(score).reshape(-1)[0]))
        if self._time_key:
            accumulator.days.append(int(self._feature(element, self._time_key, "time_key")) // DAY_SECONDS)
        if self._card_key:
            accumulator.cards.append(self._feature(element, self._card_key, "card_key"))
        return accumulator

    def _feature(self, element: metric_types.StandardMetricInputs, name: str, setting: str) -> Any:
        value = util.get_by_keys(element.features or {}, [name], optional=True)
        flat = None if value is None else np.asarray(value).reshape(-1)
        if flat is None or flat.size != 1:
            found = "missing" if flat is None or flat.size == 0 else f"{flat.size} values"
            raise metrics.FraudMetricError(
                f"feature {name!r} (evaluation.{setting}) is {found} in an eval example; every example needs "
                f"exactly one value: set evaluation.{setting} to a feature the eval Examples hold")
        item = flat[0]
        return item.item() if isinstance(item, np.generic) else item

    def merge_accumulators(self, accumulators: Iterable[_RowsAccumulator]) -> _RowsAccumulator:
        accumulators = iter(accumulators)
        result = next(accumulators)
        for other in accumulators:
            result.labels.extend(other.labels)
            result.scores.extend(other.scores)
            result.days.extend(other.days)
            result.cards.extend(other.cards)
        return result

    def extract_output(self, accumulator: _RowsAccumulator) -> dict[metric_types.MetricKey, FraudRows]:
        labels = np.frombuffer(accumulator.labels, dtype=np.float64).copy()
        scores = np.frombuffer(accumulator.scores, dtype=np.float64).copy()
        days = np.frombuffer(accumulator.days, dtype=np.int64).copy() if self._time_key else None
        cards = np.asarray(accumulator.cards) if self._card_key else None
        keys = [labels, scores] + ([cards] if cards is not None else []) + ([days] if days is not None else [])
        order = np.lexsort(keys) if labels.size else np.arange(0)
        return {self._key: FraudRows(labels[order], scores[order],
                                     None if days is None else days[order],
                                     None if cards is None else cards[order])}


def _computations(name: str, value: Callable[[FraudRows], dict[str, float]], extra_names: list[str],
                  card_key: str | None, time_key: str | None, eval_config: config_pb2.EvalConfig | None,
                  model_names: list[str] | None, output_names: list[str] | None,
                  example_weighted: bool) -> metric_types.MetricComputations:
    """One shared rows computation per (model, output) and the metric derived from it."""
    if example_weighted:
        raise metrics.FraudMetricError(
            f"{name} is unweighted (the Fraud Detection Handbook's definition): remove example_weights from "
            "the metrics spec that holds it")
    features = [key for key in (card_key, time_key) if key]
    preprocessors = [metric_types.FeaturePreprocessor(feature_keys=features)] if features else None
    rows_name = "_".join([_ROWS_NAME, *features])
    computations: metric_types.MetricComputations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            rows_key = metric_types.MetricKey(name=rows_name, model_name=model_name, output_name=output_name)
            keys = {metric_name: metric_types.MetricKey(name=metric_name, model_name=model_name,
                                                        output_name=output_name)
                    for metric_name in [name, *extra_names]}
            computations.append(metric_types.MetricComputation(
                keys=[rows_key], preprocessors=preprocessors,
                combiner=_RowsCombiner(rows_key, eval_config, card_key, time_key)))

            def result(slice_metrics: dict, rows_key: Any = rows_key, keys: Any = keys) -> dict:
                rows = slice_metrics[rows_key]
                values = value(rows) if rows.labels.size else {metric_name: float("nan") for metric_name in keys}
                return {keys[metric_name]: number for metric_name, number in values.items()}

            computations.append(metric_types.DerivedMetricComputation(keys=list(keys.values()), result=result))
    return computations


class AveragePrecision(metric_types.Metric):
    """Average precision (scikit-learn's definition) of the fraud score, the headline figure for rare fraud.

    card_key/time_key are optional and unused by the value: naming the same features as the other fraud
    metrics lets all of them share one copy of the rows.
    """

    def __init__(self, name: str = AVERAGE_PRECISION_NAME, card_key: str | None = None,
                 time_key: str | None = None) -> None:
        super().__init__(_average_precision, name=name, card_key=card_key, time_key=time_key)


def _average_precision(name: str = AVERAGE_PRECISION_NAME, card_key: str | None = None,
                       time_key: str | None = None, eval_config: config_pb2.EvalConfig | None = None,
                       model_names: list[str] | None = None, output_names: list[str] | None = None,
                       example_weighted: bool = False) -> metric_types.MetricComputations:
    def value(rows: FraudRows) -> dict[str, float]:
        return {name: metrics.average_precision(rows.labels, rows.scores)}

    return _computations(name, value, [], card_key, time_key, eval_config, model_names, output_names,
                         example_weighted)


class CardPrecisionAtK(metric_types.Metric):
    """Card Precision@k as the Fraud Detection Handbook defines it (models/fraud/metrics.py), per slice.

    A day with fewer than k cards has no top k: the book's figure would divide by k anyway and read as
    a poor model. Here a slice whose smallest day holds fewer than k cards gets NaN (a NaN fails any
    threshold set on it) and a warning naming evaluation.card_precision_k and that day's card count;
    ``cards_in_smallest_day`` is reported beside it so the report can say why.
    """

    def __init__(self, k: int = 100, card_key: str = "card_id", time_key: str = "timestamp",
                 name: str | None = None) -> None:
        self._k = k
        super().__init__(_card_precision_at_k, k=k, card_key=card_key, time_key=time_key, name=name)

    def _default_name(self) -> str:
        return card_precision_name(self._k)


def _card_precision_at_k(k: int = 100, card_key: str = "card_id", time_key: str = "timestamp",
                         name: str | None = None, eval_config: config_pb2.EvalConfig | None = None,
                         model_names: list[str] | None = None, output_names: list[str] | None = None,
                         example_weighted: bool = False) -> metric_types.MetricComputations:
    name = name or card_precision_name(k)

    def value(rows: FraudRows) -> dict[str, float]:
        per_day = rows.cards_per_day()
        smallest_day = min(per_day, key=lambda day: (per_day[day], day))
        smallest = per_day[smallest_day]
        if smallest < k:
            logging.warning(
                "%s is undefined on this slice: day %d (UTC day index) holds %d cards, fewer than "
                "evaluation.card_precision_k %d; lower evaluation.card_precision_k or evaluate more cards per "
                "day", name, smallest_day, smallest, k)
            precision = float("nan")
        else:
            assert rows.days is not None and rows.cards is not None  # cards_per_day() needed both
            precision, _ = metrics.card_precision_at_k(rows.days, rows.cards, rows.labels, rows.scores, k=k)
        return {name: precision, SMALLEST_DAY_CARDS_NAME: float(smallest)}

    return _computations(name, value, [SMALLEST_DAY_CARDS_NAME], card_key, time_key, eval_config, model_names,
                         output_names, example_weighted)


class RecallAtDailyAlertBudget(metric_types.Metric):
    """Share of frauds caught when only the ``alerts_per_day`` highest-scored transactions of each day are
    alerted (a day with fewer transactions alerts them all: the budget does not bind there)."""

    def __init__(self, alerts_per_day: int = 100, time_key: str = "timestamp", card_key: str | None = None,
                 name: str | None = None) -> None:
        self._alerts_per_day = alerts_per_day
        super().__init__(_recall_at_daily_alert_budget, alerts_per_day=alerts_per_day, time_key=time_key,
                         card_key=card_key, name=name)

    def _default_name(self) -> str:
        return alert_budget_recall_name(self._alerts_per_day)


def _recall_at_daily_alert_budget(alerts_per_day: int = 100, time_key: str = "timestamp",
                                  card_key: str | None = None, name: str | None = None,
                                  eval_config: config_pb2.EvalConfig | None = None,
                                  model_names: list[str] | None = None, output_names: list[str] | None = None,
                                  example_weighted: bool = False) -> metric_types.MetricComputations:
    name = name or alert_budget_recall_name(alerts_per_day)

    def value(rows: FraudRows) -> dict[str, float]:
        assert rows.days is not None  # the combiner reads time_key for this metric
        return {name: metrics.recall_at_daily_alert_budget(rows.days, rows.labels, rows.scores, alerts_per_day)}

    return _computations(name, value, [], card_key, time_key, eval_config, model_names, output_names,
                         example_weighted)
