"""Each transaction's card history (its previous N transactions) as fixed-length list features.

Built from anonymized rows only, keyed by the pseudonymized card id, so raw identifiers are never
grouped or shuffled. No leakage: a transaction's history holds only transactions of the same card
with a strictly earlier time. Transactions at the same second never see each other (neither is
known when the other is scored); among equal times, `tiebreak` fixes the order of the lists.

History lists are most recent first and padded to `length`:

    history_<feature>        the feature of each earlier transaction (padding: 0.0 or "")
    history_seconds_since    seconds from that transaction to this one (> 0; padding 0.0)
    history_mask             1 for a real entry, 0 for padding
    history_count            number of real entries (0..length)
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam

from components.anonymizing_example_gen.feature_settings import Kind, SequenceFeaturesConfig

Row = dict[str, Any]
_PAD: dict[Kind, Any] = {"float": 0.0, "bytes": "", "int": 0}


def with_history(
    rows: Iterable[tuple[bool, Row]], config: SequenceFeaturesConfig, kinds: Mapping[str, Kind]
) -> Iterator[Row]:
    """One card's rows (any order) -> its target rows, each with the history of strictly earlier rows.

    `rows` are (is_target, row) pairs; context rows (earlier spans) feed histories but are not emitted.
    """
    timed = [(row[config.time], _tiebreak(row, config), is_target, row) for is_target, row in rows]
    timed.sort(key=lambda item: (item[0], item[1]))
    recent: deque[Row] = deque(maxlen=config.length)
    start = 0
    while start < len(timed):
        end = start
        while end < len(timed) and timed[end][0] == timed[start][0]:
            end += 1
        earlier = list(reversed(recent))  # most recent first; nothing at this same time
        for now, _, is_target, row in timed[start:end]:
            if is_target:
                yield {**row, **history_features(earlier, now, config, kinds)}
        recent.extend(item[3] for item in timed[start:end])
        start = end


def history_features(
    earlier: list[Row], now: float, config: SequenceFeaturesConfig, kinds: Mapping[str, Kind]
) -> Row:
    """The padded history lists of a transaction at time `now` given its earlier rows (most recent first)."""
    pad = config.length - len(earlier)
    features: Row = {}
    for name in config.features:
        out = f"{config.prefix}{name}"
        fill = _PAD[kinds[out]]
        features[out] = [fill if row[name] is None else row[name] for row in earlier] + [fill] * pad
    features[f"{config.prefix}seconds_since"] = [float(now - row[config.time]) for row in earlier] + [0.0] * pad
    features[f"{config.prefix}mask"] = [1] * len(earlier) + [0] * pad
    features[f"{config.prefix}count"] = len(earlier)
    return features


def empty_history(config: SequenceFeaturesConfig, kinds: Mapping[str, Kind]) -> Row:
    return history_features([], 0.0, config, kinds)


def _tiebreak(row: Row, config: SequenceFeaturesConfig) -> str:
    value = row.get(config.tiebreak) if config.tiebreak else None
    return "" if value is None else str(value)


class AddCardHistory(beam.PTransform):
    """(is_target, row) pairs -> target rows with history features, grouped by card pseudonym.

    Rows without a card or a time cannot be placed in a history: they get an empty one.
    """

    def __init__(self, config: SequenceFeaturesConfig, kinds: Mapping[str, Kind]) -> None:
        super().__init__()
        self._config = config
        self._kinds = dict(kinds)

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        config, kinds = self._config, self._kinds
        placeable, loose = rows | "Placeable" >> beam.Partition(
            lambda pair, _: 0 if pair[1].get(config.key) is not None and pair[1].get(config.time) is not None else 1,
            2,
        )
        with_card = (
            placeable
            | "KeyByCard" >> beam.Map(lambda pair: (pair[1][config.key], pair))
            | "GroupByCard" >> beam.GroupByKey()
            | "History" >> beam.FlatMap(lambda keyed: with_history(keyed[1], config, kinds))
        )
        without_card = (
            loose
            | "OnlyTargets" >> beam.Filter(lambda pair: pair[0])
            | "EmptyHistory" >> beam.Map(lambda pair: {**pair[1], **empty_history(config, kinds)})
        )
        return (with_card, without_card) | "Merge" >> beam.Flatten()

