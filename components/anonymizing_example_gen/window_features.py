"""The Fraud Detection Handbook's window features, computed in the anonymizing ExampleGen with Beam.

Customer windows group a card's rows (its own earlier transactions and itself, amounts known at
once); terminal windows group a terminal's rows and use labels only `label_delay_days` after their
transaction, when a fraud team would know them. The arithmetic is `models.fraud.window_features`
(pure numpy, shared with the benchmarks and the metrics); this module only groups rows: one
GroupByKey per card, then one per terminal, over target and context rows alike, so a row's
features never depend on whether its neighbours are emitted.

Missing values: a row without a card is its own customer history, a row without a terminal gets
empty terminal windows, a missing amount counts as 0.0 and a missing label as not fraud (a label
not yet known). A row without a time cannot be placed in any window: it stops the run.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np

from components.anonymizing_example_gen.feature_settings import (
    WindowFeaturesConfig,
    window_feature_kinds,
)
from models.fraud.window_features import (
    calendar_features,
    customer_window_features,
    terminal_window_features,
)

Row = dict[str, Any]


def _time(row: Row, config: WindowFeaturesConfig) -> float:
    return time_value(row.get(config.time), row.get(config.tiebreak or ""), config)


def time_value(value: Any, transaction: Any, config: WindowFeaturesConfig) -> float:
    """A row's time as a float; `transaction` (its tiebreak value) only names the row in the error."""
    if value is None:
        raise ValueError(f"window_features.time: a row has no {config.time!r} value (transaction "
                         f"{transaction!r}); window features need every row's time")
    return float(value)


def _order_key(row: Row, config: WindowFeaturesConfig) -> tuple[float, int, float, str]:
    return order_key(_time(row, config), row.get(config.tiebreak) if config.tiebreak else None)


def order_key(time: float, tiebreak: Any) -> tuple[float, int, float, str]:
    """(time, tiebreak): numbers compare as numbers, anything else as text, a missing tiebreak first."""
    if isinstance(tiebreak, (int, float)):
        return time, 1, float(tiebreak), ""
    return time, 0 if tiebreak is None else 2, 0.0, "" if tiebreak is None else str(tiebreak)


Pair = tuple[bool, Row]  # (is_target, row)


def with_customer_windows(pairs: Iterable[Pair], config: WindowFeaturesConfig) -> Iterator[Pair]:
    """One card's (is_target, row) pairs, any order -> the same pairs with customer windows and calendar."""
    ordered = sorted(pairs, key=lambda pair: _order_key(pair[1], config))
    times = np.array([_time(row, config) for _, row in ordered], dtype=np.float64)
    amounts = np.array([float(row.get(config.amount) or 0.0) for _, row in ordered], dtype=np.float64)
    columns = {**customer_window_features(times, amounts), **calendar_features(times)}
    for index, (is_target, row) in enumerate(ordered):
        yield is_target, {**row, **{name: values[index].item() for name, values in columns.items()}}


def with_terminal_windows(pairs: Iterable[Pair], config: WindowFeaturesConfig) -> Iterator[Pair]:
    """One terminal's (is_target, row) pairs, any order -> the same pairs with delayed terminal windows."""
    ordered = sorted(pairs, key=lambda pair: _order_key(pair[1], config))
    times = np.array([_time(row, config) for _, row in ordered], dtype=np.float64)
    labels = np.array([int(row.get(config.label) or 0) for _, row in ordered], dtype=np.float64)
    columns = terminal_window_features(times, labels, config.label_delay_days)
    for index, (is_target, row) in enumerate(ordered):
        yield is_target, {**row, **{name: values[index].item() for name, values in columns.items()}}


def _empty_terminal_windows(pair: tuple[bool, Row], config: WindowFeaturesConfig) -> tuple[bool, Row]:
    _time(pair[1], config)  # still needs a time, like every other row
    names = [name for name in window_feature_kinds() if name.startswith("terminal_")]
    return pair[0], {**pair[1], **dict.fromkeys(names, 0.0)}



def group_by_column(pairs: beam.PCollection, column: str, label: str) -> tuple[beam.PCollection, beam.PCollection]:
    """(is_target, row) pairs -> (column value, pairs) groups of the rows that have the column, and the
    pairs without it (they cannot join a group); stage labels Has<label>, KeyBy<label>, GroupBy<label>."""
    with_value, without = pairs | f"Has{label}" >> beam.Partition(
        lambda pair, _: 0 if pair[1].get(column) is not None else 1, 2)
    grouped = (with_value
               | f"KeyBy{label}" >> beam.Map(lambda pair: (pair[1][column], pair))
               | f"GroupBy{label}" >> beam.GroupByKey())
    return grouped, without

class AddWindowFeatures(beam.PTransform):
    """(is_target, row) pairs -> the same pairs, every row with the book's window and calendar features.

    Context rows get features too (they are dropped later); they pass through so that the card-history
    step after this one still sees them.
    """

    def __init__(self, config: WindowFeaturesConfig) -> None:
        super().__init__()
        self._config = config

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        config = self._config
        grouped_cards, without_card = group_by_column(pairs, config.card_key, "Card")
        by_card = grouped_cards | "CustomerWindows" >> beam.FlatMap(
            lambda keyed: with_customer_windows(keyed[1], config))
        alone = without_card | "OwnCustomerWindows" >> beam.FlatMap(lambda pair: with_customer_windows([pair], config))
        rows = (by_card, alone) | "CustomerDone" >> beam.Flatten()
        return rows | AddTerminalWindows(config)


class AddTerminalWindows(beam.PTransform):
    """(is_target, row) pairs -> the same pairs with the delayed terminal windows (one GroupByKey by terminal).

    They read only the terminal's times and labels, so they can be computed before or after the
    card's steps; the ExampleGen computes them first and then does every card step in one pass.
    """

    def __init__(self, config: WindowFeaturesConfig) -> None:
        super().__init__()
        self._config = config

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        config = self._config
        grouped_terminals, without_terminal = group_by_column(pairs, config.terminal_key, "Terminal")
        by_terminal = grouped_terminals | "TerminalWindows" >> beam.FlatMap(
            lambda keyed: with_terminal_windows(keyed[1], config))
        empty = without_terminal | "EmptyTerminalWindows" >> beam.Map(_empty_terminal_windows, config)
        return (by_terminal, empty) | "Merge" >> beam.Flatten()
