"""One pass over each card's rows: the known-compromised rule, the customer windows, the card history.

All three group rows by the card pseudonym. Run as separate transforms they shuffle every row (encode,
group, decode) three times; here one GroupByKey feeds all three, applied to each card's rows in the
order the separate transforms ran them, so each row comes out exactly as before. Only when the three
settings name different card columns does the ExampleGen keep them apart (`keys_agree`).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from components.anonymizing_example_gen.feature_settings import Kind, SequenceFeaturesConfig, WindowFeaturesConfig
from components.anonymizing_example_gen.sequence_features import empty_history, with_history
from components.anonymizing_example_gen.time_windows import (
    EVAL_KNOWN_COMPROMISED,
    METRICS_NAMESPACE,
    TimeSplitPlan,
    remove_known_compromised,
)
from components.anonymizing_example_gen.window_features import with_customer_windows

Row = dict[str, Any]
Pair = tuple[bool, Row]  # (is_target, row)


def card_keys(time_split: TimeSplitPlan | None, windows: WindowFeaturesConfig | None,
              sequence: SequenceFeaturesConfig | None) -> set[str]:
    """The card columns the configured card steps group by."""
    return {key for key in (time_split.settings.card_key if time_split else None,
                            windows.card_key if windows else None,
                            sequence.key if sequence else None) if key is not None}


def keys_agree(time_split: TimeSplitPlan | None, windows: WindowFeaturesConfig | None,
               sequence: SequenceFeaturesConfig | None) -> bool:
    return len(card_keys(time_split, windows, sequence)) == 1


class _CardSteps(beam.DoFn):
    """(card, its pairs) or a lone pair without a card -> the card's target rows, finished."""

    def __init__(self, time_split: TimeSplitPlan | None, windows: WindowFeaturesConfig | None,
                 sequence: SequenceFeaturesConfig | None, kinds: Mapping[str, Kind]) -> None:
        self._time_split = time_split
        self._windows = windows
        self._sequence = sequence
        self._kinds = dict(kinds)
        self._removed = Metrics.counter(METRICS_NAMESPACE, EVAL_KNOWN_COMPROMISED)

    def process(self, element: tuple[Any, Iterable[Pair]], has_card: bool) -> Iterator[Row]:
        pairs = list(element[1])
        if self._time_split is not None and has_card:  # a row without a card is nobody's compromised card
            checked = list(remove_known_compromised(pairs, self._time_split))
            self._removed.inc(sum(1 for (was, _), (now, _) in zip(pairs, checked, strict=True) if was and not now))
            pairs = checked
        if self._windows is not None:  # without a card, a row is its own customer history
            pairs = list(with_customer_windows(pairs, self._windows))
        sequence = self._sequence
        if sequence is None:
            yield from (row for is_target, row in pairs if is_target)
            return
        if has_card:  # rows without a time cannot be placed in the history: they get an empty one
            placeable = [pair for pair in pairs if pair[1].get(sequence.time) is not None]
            yield from with_history(placeable, sequence, self._kinds)
            pairs = [pair for pair in pairs if pair[1].get(sequence.time) is None]
        for is_target, row in pairs:
            if is_target:
                yield {**row, **empty_history(sequence, self._kinds)}


class CardPass(beam.PTransform):
    """(is_target, row) pairs with their terminal windows -> the emitted rows, each card's steps done once."""

    def __init__(self, time_split: TimeSplitPlan | None, windows: WindowFeaturesConfig | None,
                 sequence: SequenceFeaturesConfig | None, kinds: Mapping[str, Kind]) -> None:
        super().__init__()
        if not keys_agree(time_split, windows, sequence):
            keys = sorted(card_keys(time_split, windows, sequence))
            raise ValueError(f"one card pass needs one card column, got {keys}; use AddWindowFeatures and "
                             "AddCardHistory apart")
        self._steps = _CardSteps(time_split, windows, sequence, kinds)
        self._key = card_keys(time_split, windows, sequence).pop()

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        key, steps = self._key, self._steps
        with_card, without = pairs | "HasCard" >> beam.Partition(
            lambda pair, _: 0 if pair[1].get(key) is not None else 1, 2)
        by_card = (with_card
                   | "KeyByCard" >> beam.Map(lambda pair: (pair[1][key], pair))
                   | "GroupByCard" >> beam.GroupByKey()
                   | "CardSteps" >> beam.ParDo(steps, has_card=True))
        alone = (without
                 | "Alone" >> beam.Map(lambda pair: (None, [pair]))
                 | "LoneSteps" >> beam.ParDo(steps, has_card=False))
        return (by_card, alone) | "Rows" >> beam.Flatten()
