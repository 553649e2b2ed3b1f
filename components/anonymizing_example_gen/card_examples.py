"""A time split's examples with one shuffle of full rows: the card pass, columnar, straight to tf.Examples.

The row-at-a-time path (ingest.AnonymizedRows, then window_features, card_pass and the encoder) moves
every row through Beam three times: it is materialized before the k-anonymity filter (a side input), then
grouped by terminal, then by card, each time encoding and decoding a dict. Here a row is read once as a
tuple of its output columns, and only a thin record (card, row id, time, label, quasi-identifiers) is
grouped by terminal; the terminal windows come back keyed by card and meet the rows in the one
GroupByKey by card. Each card's steps then run on arrays of its rows, in the order the row-at-a-time path
runs them (small groups dropped, known-compromised eval rows turned into context, customer windows with
the terminal windows, card history), and its target rows are encoded together (`encoding.to_examples`).
The examples are the same, feature for feature (tests/components/test_example_gen_equivalence.py).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from components.anonymizing_example_gen.card_pass import card_keys
from components.anonymizing_example_gen.encoding import to_examples
from components.anonymizing_example_gen.feature_settings import (
    Kind,
    SequenceFeaturesConfig,
    WindowFeaturesConfig,
    window_feature_kinds,
)
from components.anonymizing_example_gen.ingest import (
    ROWS_OUT,
    ROWS_SUPPRESSED,
    IngestPlan,
    ReadAnonymizedRows,
    small_groups,
)
from components.anonymizing_example_gen.time_windows import (
    EVAL_FRAUDS,
    EVAL_KNOWN_COMPROMISED,
    EVAL_ROWS,
    METRICS_NAMESPACE,
    SPLITS,
    TRAIN_FRAUDS,
    TRAIN_ROWS,
    TimeSplitPlan,
)
from components.anonymizing_example_gen.window_features import order_key, time_value
from models.fraud.time_split import known_compromised
from models.fraud.window_features import calendar_features, customer_window_features, terminal_window_features

Values = tuple[Any, ...]  # a row's output columns, in the policy's order
JoinKey = tuple[bool, Any]  # (True, card) or, for a row without a card, (False, its row id)
_PAD: dict[Kind, Any] = {"float": 0.0, "bytes": "", "int": 0}
THIN, MEMBERS = "thin", "members"  # the reader's tagged outputs


@dataclass(frozen=True)
class _Columns:
    """Where each column the card steps read sits in a row's value tuple."""

    names: tuple[str, ...]

    def index(self, name: str | None) -> int | None:
        return None if name is None else self.names.index(name)


@dataclass(frozen=True)
class _Privacy:
    """The k-anonymity filter as the row-at-a-time path applies it (ingest._DropSmallGroups)."""

    quasi_identifiers: tuple[int, ...]
    suppress: bool

    def group(self, values: Values) -> tuple[Any, ...]:
        return tuple(values[i] for i in self.quasi_identifiers)

    def keeps(self, group: tuple[Any, ...], small: Mapping[Any, int] | None) -> bool:
        if small is None:
            return True
        if self.suppress:
            return group not in small
        return not small  # fail mode: any small group drops every row (the executor then fails)


@dataclass(frozen=True)
class _Routes:
    """What the reader sends where: each row keyed by card, a thin record by terminal, a k-anonymity member."""

    card_at: int
    terminal: tuple[int, int, int] | None  # (terminal, time, label) columns, with window features
    privacy: _Privacy | None
    distinct_at: int | None  # k-anonymity's count_distinct column

    def join_key(self, row_id: int, values: Values) -> JoinKey:
        card = values[self.card_at]
        return (True, card) if card is not None else (False, row_id)


class _ReadRows(ReadAnonymizedRows):
    """(file number, path, is_target) -> (join key, (0, row id, is_target, values)); tagged THIN, the terminal's
    (terminal, (join key, row id, time, label, group)); tagged MEMBERS, a target's (group, member).

    The row id is unique in the run. One step routes each row three ways, where separate maps would
    each take every row again."""

    def __init__(self, policy_json: str, time_split: TimeSplitPlan, columns: tuple[str, ...], routes: _Routes) -> None:
        super().__init__(policy_json, time_split)
        self._columns = columns
        self._routes = routes

    def process(self, element: tuple[int, str, bool]) -> Iterator[Any]:  # type: ignore[override]
        number, path, is_target = element
        columns, routes = self._columns, self._routes
        privacy, terminal, distinct_at = routes.privacy, routes.terminal, routes.distinct_at
        for line, (target, row) in self.read(path, is_target):
            row_id, values = number << 32 | line, tuple(row[name] for name in columns)
            key = routes.join_key(row_id, values)
            yield key, (0, row_id, target, values)
            group = privacy.group(values) if privacy is not None else None
            if terminal is not None and values[terminal[0]] is not None:
                yield beam.pvalue.TaggedOutput(THIN, (values[terminal[0]], (
                    key, row_id, values[terminal[1]], values[terminal[2]], group)))
            if privacy is not None and target:
                yield beam.pvalue.TaggedOutput(MEMBERS, (group, None if distinct_at is None else values[distinct_at]))


class _TerminalWindows(beam.DoFn):
    """(terminal, thin records) -> (join key, (1, row id, terminal window values)) for each kept row."""

    def __init__(self, config: WindowFeaturesConfig, privacy: _Privacy | None) -> None:
        self._config = config
        self._privacy = privacy

    def process(self, element: tuple[Any, Iterable[tuple]], small: Mapping[Any, int] | None = None
                ) -> Iterator[tuple[JoinKey, tuple]]:
        privacy = self._privacy
        records = [r for r in element[1] if privacy is None or privacy.keeps(r[4], small)]
        # a row without a time stops the run in the card step, with the row-at-a-time path's error
        records = [r for r in records if r[2] is not None]
        records.sort(key=lambda r: float(r[2]))  # the windows read only times: order among equal times is moot
        times = np.array([float(r[2]) for r in records], dtype=np.float64)
        labels = np.array([int(r[3] or 0) for r in records], dtype=np.float64)
        columns = terminal_window_features(times, labels, self._config.label_delay_days)
        table = np.column_stack(list(columns.values())).tolist() if records else []
        for record, values in zip(records, table, strict=True):
            yield record[0], (1, record[1], tuple(values))


class _CardExamples(beam.DoFn):
    """(join key, its rows and terminal windows) -> serialized tf.Examples, tagged 'train' or 'eval', counted."""

    def __init__(self, plan: TimeSplitPlan, windows: WindowFeaturesConfig | None,
                 sequence: SequenceFeaturesConfig | None, kinds: Mapping[str, Kind], columns: _Columns,
                 privacy: _Privacy | None) -> None:
        self._plan = plan
        self._windows = windows
        self._sequence = sequence
        self._kinds = dict(kinds)
        self._columns = columns
        self._privacy = privacy
        self._terminal_names = [n for n in window_feature_kinds() if n.startswith("terminal_")]
        self._suppressed = Metrics.counter(METRICS_NAMESPACE, ROWS_SUPPRESSED)
        self._removed = Metrics.counter(METRICS_NAMESPACE, EVAL_KNOWN_COMPROMISED)
        self._rows_out = Metrics.counter(METRICS_NAMESPACE, ROWS_OUT)
        self._rows = [Metrics.counter(METRICS_NAMESPACE, name) for name in (TRAIN_ROWS, EVAL_ROWS)]
        self._frauds = [Metrics.counter(METRICS_NAMESPACE, name) for name in (TRAIN_FRAUDS, EVAL_FRAUDS)]

    def process(self, element: tuple[JoinKey, Iterable[tuple]], small: Mapping[Any, int] | None = None
                ) -> Iterator[beam.pvalue.TaggedOutput]:
        (has_card, _), items = element
        rows: list[tuple] = []
        terminal: dict[int, tuple[float, ...]] = {}
        for item in items:
            if item[0] == 0:
                rows.append(item)
            else:
                terminal[item[1]] = item[2]
        rows = self._k_anonymous(rows, small)
        if not rows:
            return
        values = [row[3] for row in rows]
        target = np.array([row[2] for row in rows], dtype=bool)
        if has_card:  # a row without a card is nobody's compromised card
            target = self._known_compromised(values, target)
        features: dict[str, Any] = {}
        if self._windows is not None:
            features.update(self._window_features(rows, values, terminal))
        if self._sequence is not None:
            features.update(self._history(values, has_card))
        chosen = np.flatnonzero(target)
        if chosen.size == 0:
            return
        yield from self._encode(values, features, chosen)

    def _k_anonymous(self, rows: list[tuple], small: Mapping[Any, int] | None) -> list[tuple]:
        privacy = self._privacy
        if privacy is None:
            return rows
        kept = [row for row in rows if privacy.keeps(privacy.group(row[3]), small)]
        if privacy.suppress and len(kept) < len(rows):
            self._suppressed.inc(sum(1 for row in rows if row[2]) - sum(1 for row in kept if row[2]))
        return kept

    def _known_compromised(self, values: list[Values], target: np.ndarray) -> np.ndarray:
        """time_windows.remove_known_compromised on the card's arrays."""
        plan, settings = self._plan, self._plan.settings
        time_at, card_at, label_at = (self._columns.index(settings.time), self._columns.index(settings.card_key),
                                      self._columns.index(settings.label))
        assert time_at is not None and card_at is not None and label_at is not None
        split = plan.split
        days = [plan.day_of_time(v[time_at]) for v in values]
        inside = [i for i, day in enumerate(days) if day is not None and split.window_of(day) is not None]
        if not inside:
            return target
        flags = np.zeros(len(values), dtype=bool)
        flags[inside] = known_compromised(
            np.array([days[i] for i in inside], dtype=np.int64),
            np.array([str(values[i][card_at]) for i in inside]),
            np.array([int(values[i][label_at] or 0) for i in inside], dtype=np.int64), split)
        removed = target & flags
        if removed.any():
            self._removed.inc(int(removed.sum()))
        return target & ~flags

    def _window_features(self, rows: list[tuple], values: list[Values], terminal: Mapping[int, tuple]
                         ) -> dict[str, np.ndarray]:
        """Customer windows and calendar over the card's rows (window_features.with_customer_windows), and
        each row's terminal windows (zeros without a terminal)."""
        config = self._windows
        assert config is not None
        time_at, amount_at = self._columns.index(config.time), self._columns.index(config.amount)
        tiebreak_at, terminal_at = self._columns.index(config.tiebreak), self._columns.index(config.terminal_key)
        assert time_at is not None and amount_at is not None and terminal_at is not None
        keys = [order_key(time_value(v[time_at], None if tiebreak_at is None else v[tiebreak_at], config),
                          None if tiebreak_at is None else v[tiebreak_at]) for v in values]
        order = np.array(sorted(range(len(values)), key=keys.__getitem__), dtype=np.int64)
        times = np.array([keys[i][0] for i in order], dtype=np.float64)
        amounts = np.array([float(values[i][amount_at] or 0.0) for i in order], dtype=np.float64)
        out: dict[str, np.ndarray] = {}
        for name, column in {**customer_window_features(times, amounts), **calendar_features(times)}.items():
            placed = np.empty_like(column)
            placed[order] = column
            out[name] = placed
        zeros = (0.0,) * len(self._terminal_names)
        table = np.array([terminal[row[1]] if v[terminal_at] is not None else zeros
                          for row, v in zip(rows, values, strict=True)], dtype=np.float64)
        for index, name in enumerate(self._terminal_names):
            out[name] = table[:, index]
        return out

    def _history(self, values: list[Values], has_card: bool) -> dict[str, Any]:
        """sequence_features.with_history on the card's arrays: each row's `length` latest rows strictly
        before it, most recent first, padded; rows without a card or a time get an empty history."""
        config, kinds, n = self._sequence, self._kinds, len(values)
        assert config is not None
        length, prefix = config.length, config.prefix
        time_at, tiebreak_at = self._columns.index(config.time), self._columns.index(config.tiebreak)
        assert time_at is not None
        placed = [i for i, v in enumerate(values) if v[time_at] is not None] if has_card else []

        def tiebreak(v: Values) -> str:
            value = None if tiebreak_at is None else v[tiebreak_at]
            return "" if value is None else str(value)

        placed.sort(key=lambda i: (values[i][time_at], tiebreak(values[i])))
        order = np.array(placed, dtype=np.int64)
        times = np.array([values[i][time_at] for i in placed], dtype=np.float64)
        starts = np.arange(order.size)
        if order.size:  # the first sorted position of each row's time: the rows before it are earlier
            change = np.concatenate([[True], times[1:] != times[:-1]])
            starts = np.maximum.accumulate(np.where(change, starts, 0))
        earlier = starts[:, None] - 1 - np.arange(length)[None, :]
        real = earlier >= 0
        at = np.where(real, earlier, 0)
        out: dict[str, Any] = {}
        for name in config.features:
            column_at = self._columns.index(name)
            assert column_at is not None
            name_out = f"{prefix}{name}"
            kind = kinds[name_out]
            column = np.empty((n, length), dtype=object if kind == "bytes" else np.float64 if kind == "float"
                              else np.int64)
            column[:] = _PAD[kind]
            if order.size:
                source = np.array([_PAD[kind] if values[i][column_at] is None else values[i][column_at]
                                   for i in placed], dtype=column.dtype)
                column[order] = np.where(real, source[at], _PAD[kind])
            out[name_out] = column
        seconds = np.zeros((n, length), dtype=np.float64)
        mask = np.zeros((n, length), dtype=np.int64)
        if order.size:
            seconds[order] = np.where(real, times[:, None] - times[at], 0.0)
            mask[order] = real.astype(np.int64)
        out[f"{prefix}seconds_since"] = seconds
        out[f"{prefix}mask"] = mask
        out[f"{prefix}count"] = mask.sum(axis=1)
        return out

    def _encode(self, values: list[Values], features: Mapping[str, Any], chosen: np.ndarray
                ) -> Iterator[beam.pvalue.TaggedOutput]:
        settings = self._plan.settings
        time_at, label_at = self._columns.index(settings.time), self._columns.index(settings.label)
        assert time_at is not None and label_at is not None
        picked = [values[i] for i in chosen]
        columns: dict[str, Any] = {}
        for name in self._kinds:
            if name in features:
                columns[name] = features[name][chosen]
            else:
                at = self._columns.index(name)
                assert at is not None
                columns[name] = [v[at] for v in picked]
        encoded = to_examples(columns, self._kinds, len(picked))
        plan = self._plan
        for v, example in zip(picked, encoded, strict=True):
            self._rows_out.inc()
            split = 0 if plan.window_of_day(plan.day_of_time(v[time_at])) == "train" else 1
            self._rows[split].inc()  # as time_windows.split_by_window counts
            if v[label_at] == 1:
                self._frauds[split].inc()
            yield beam.pvalue.TaggedOutput(SPLITS[split], example)


class TimeSplitExamples(beam.PTransform):
    """Pipeline root -> {'train': serialized examples, 'eval': serialized examples} of a time split."""

    def __init__(self, plan: IngestPlan, kinds: Mapping[str, Kind]) -> None:
        super().__init__()
        if plan.time_split is None or len(card_keys(plan.time_split, plan.window_features, plan.sequence)) != 1:
            raise ValueError("TimeSplitExamples needs a time split whose card steps name one card column")
        self._plan = plan
        self._kinds = dict(kinds)

    def expand(self, pipeline: beam.Pipeline) -> dict[str, beam.PCollection]:
        plan, policy = self._plan, self._plan.policy
        time_split = plan.time_split
        assert time_split is not None
        columns = _Columns(tuple(policy.output_columns()))
        card_at = columns.names.index(card_keys(time_split, plan.window_features, plan.sequence).pop())
        windows, rule = plan.window_features, policy.k_anonymity
        privacy = None
        if rule is not None:  # the policy checks that the quasi-identifiers are output columns
            privacy = _Privacy(tuple(columns.names.index(name) for name in rule.quasi_identifiers),
                               rule.on_violation == "suppress")
        routes = _Routes(card_at, None if windows is None else (
            columns.names.index(windows.terminal_key), columns.names.index(windows.time),
            columns.names.index(windows.label)), privacy, columns.index(rule.count_distinct if rule else None))
        files = [(number, path, is_target) for number, (path, is_target) in enumerate(
            [(path, True) for path in plan.target_files] + [(path, False) for path in plan.context_files])]
        read = (pipeline
                | "ListFiles" >> beam.Create(files)
                | "SpreadFiles" >> beam.Reshuffle()
                | "ReadAndAnonymize" >> beam.ParDo(_ReadRows(plan.policy_json, time_split, columns.names, routes))
                .with_outputs(THIN, MEMBERS, main="rows"))
        side = {}
        if rule is not None:
            small = small_groups(pipeline, read[MEMBERS], rule, plan.k_anonymity_report_path)
            side = {"small": beam.pvalue.AsDict(small)}
        parts = [read.rows]
        if windows is not None:
            parts.append(read[THIN]
                         | "GroupByTerminal" >> beam.GroupByKey()
                         | "TerminalWindows" >> beam.ParDo(_TerminalWindows(windows, privacy), **side))
        steps = _CardExamples(time_split, windows, plan.sequence, self._kinds, columns, privacy)
        examples = (parts
                    | "RowsAndTerminalWindows" >> beam.Flatten()
                    | "GroupByCard" >> beam.GroupByKey()
                    | "CardSteps" >> beam.ParDo(steps, **side).with_outputs(*SPLITS))
        return {name: examples[name] for name in SPLITS}
