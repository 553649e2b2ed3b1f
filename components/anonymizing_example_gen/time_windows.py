"""Out-of-time splits in the anonymizing ExampleGen: which spans to read, and each row's window.

A time split trains on `train_days`, skips `delay_days` (their labels would not have arrived when the
model is trained) and evaluates on the `eval_days` ending with the span TFX resolved (the latest, or
the one RangeConfig names). Days before the train window, and the delay window, are read only as
context for the window features and card histories; they are never emitted. Eval rows of cards a
fraud team would already know as compromised are turned into context too (the handbook's rule,
`models.fraud.time_split.known_compromised`).

Span to day: one span is one UTC day. The date of each span comes from the raw data's
`manifest.json` (its "spans": [{"span", "date"}] list, written by both fraud simulators); without a
manifest, from the first row's timestamp of the earliest span, later spans following day by day.
Day 0 is the date of the earliest span. A row belongs to the window its own timestamp's day falls
in, so the windows, the features and the known-compromised rule read one clock.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from pydantic import BaseModel, ConfigDict, Field

from components.anonymizing_example_gen.window_features import group_by_column
from models.fraud.time_split import DAY_SECONDS, TimeSplit, known_compromised

METRICS_NAMESPACE = "esteira.anonymizing_example_gen"
TRAIN_ROWS, TRAIN_FRAUDS = "train_rows", "train_frauds"
EVAL_ROWS, EVAL_FRAUDS = "eval_rows", "eval_frauds"
EVAL_KNOWN_COMPROMISED = "eval_known_compromised_rows"
SPLITS = ("train", "eval")
MANIFEST = "manifest.json"

Row = dict[str, Any]


class TimeSplitSettings(BaseModel):
    """What the executor needs to split by time: the window lengths and the columns it reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_days: int = Field(ge=1)
    delay_days: int = Field(ge=0)
    eval_days: int = Field(ge=1)
    time: str = Field(default="timestamp", description="epoch-seconds column that places a row on a day")
    card_key: str = Field(default="card_id", description="column naming the card (known-compromised rule)")
    label: str = Field(default="is_fraud", description="0/1 fraud label column")
    history_days: int = Field(default=0, ge=0, description="days before the train window read as context")

    def check_columns(self, output_columns: Mapping[str, str]) -> None:
        """Every column the split reads must be one the privacy policy outputs, with a usable type."""
        for key in ("time", "card_key", "label"):
            column = getattr(self, key)
            if column not in output_columns:
                raise ValueError(f"the time split's {key} column {column!r} is not produced by the privacy "
                                 f"policy; use one of {sorted(output_columns)}")
        if output_columns[self.time] not in ("timestamp", "int", "float"):
            raise ValueError(f"the time split's time column {self.time!r} must have dtype timestamp, int or "
                             f"float (epoch seconds), not {output_columns[self.time]}")


@dataclass(frozen=True)
class SpanCalendar:
    """Span number <-> date, and so <-> day index (day 0 = the earliest span's date)."""

    dates: dict[int, date]
    source: str  # "manifest" or "timestamps"

    @property
    def origin(self) -> date:
        return self.dates[min(self.dates)]

    @property
    def origin_seconds(self) -> int:
        return int(datetime(self.origin.year, self.origin.month, self.origin.day, tzinfo=UTC).timestamp())

    def date_of_span(self, span: int) -> date:
        if span in self.dates:
            return self.dates[span]
        first = min(self.dates)  # beyond the manifest's list: one span per day
        return self.dates[first] + timedelta(days=span - first)

    def day_of_span(self, span: int) -> int:
        return (self.date_of_span(span) - self.origin).days

    def span_of_day(self, day: int) -> int:
        wanted = self.origin + timedelta(days=day)
        for span, when in self.dates.items():
            if when == wanted:
                return span
        return min(self.dates) + day

    def date_of_day(self, day: int) -> date:
        return self.origin + timedelta(days=day)


def read_manifest_calendar(input_base: str) -> SpanCalendar | None:
    """The span dates listed in `<input_base>/manifest.json`, or None without a usable manifest."""
    path = os.path.join(input_base, MANIFEST)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as stream:
        manifest = json.loads(stream.read().decode("utf-8"))
    spans = manifest.get("spans") if isinstance(manifest, dict) else None
    dates = {int(s["span"]): date.fromisoformat(s["date"]) for s in spans or [] if "span" in s and "date" in s}
    return SpanCalendar(dates, "manifest") if dates else None


def timestamp_calendar(first_span: int, first_file: str, raw_time_column: str) -> SpanCalendar:
    """Day 0 = the UTC date of the first row of the earliest span's file; one span per day after it."""
    with FileSystems.open(first_file) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        reader = csv.reader(text)
        header = next(reader, [])
        if raw_time_column not in header:
            raise RuntimeError(f"{first_file} has no column {raw_time_column!r} to date span {first_span} by; "
                               "add a manifest.json with the spans' dates or fix the time column")
        row = next(reader, None)
    if row is None:
        raise RuntimeError(f"{first_file} has no rows to date span {first_span} by; add a manifest.json with "
                           "the spans' dates")
    seconds = float(row[header.index(raw_time_column)])
    return SpanCalendar({first_span: datetime.fromtimestamp(seconds, tz=UTC).date()}, "timestamps")


@dataclass(frozen=True)
class TimeSplitPlan:
    """The resolved split: windows as day indices, the origin they count from, and the spans read."""

    settings: TimeSplitSettings
    origin_seconds: int
    end_day: int
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # window -> (first span, last span)
    dates: dict[str, tuple[str, str]] = field(default_factory=dict)  # window -> (first date, last date)

    @cached_property
    def split(self) -> TimeSplit:
        s = self.settings
        return TimeSplit(s.train_days, s.delay_days, s.eval_days, self.end_day)

    def day_of(self, row: Row) -> int | None:
        """`day_index` of the row's time, in plain float arithmetic (the same IEEE steps, without an array
        per row: this runs for every row read)."""
        return self.day_of_time(row.get(self.settings.time))

    def day_of_time(self, value: Any) -> int | None:
        """`day_of` for the time value itself."""
        return None if value is None else math.floor((float(value) - self.origin_seconds) / DAY_SECONDS)

    @cached_property
    def _windows(self) -> tuple[tuple[str, int, int], ...]:
        split = self.split
        return tuple((name, *bounds) for name, bounds in (
            ("train", split.train_range), ("delay", split.delay_range), ("eval", split.eval_range)))

    def window_of(self, row: Row) -> str | None:
        """'train', 'delay', 'eval' or None (history, or a row without a time)."""
        return self.window_of_day(self.day_of(row))

    def window_of_day(self, day: int | None) -> str | None:
        """`window_of` for the row's day (from `day_of_time`)."""
        if day is None:
            return None
        for name, first, last in self._windows:  # TimeSplit.window_of, with the ranges computed once
            if first <= day <= last:
                return name
        return None


def plan_time_split(settings: TimeSplitSettings, calendar: SpanCalendar, end_span: int) -> TimeSplitPlan:
    """Windows ending on `end_span`, plus the history before them, as days, spans and dates."""
    end_day = calendar.day_of_span(end_span)
    split = TimeSplit(settings.train_days, settings.delay_days, settings.eval_days, end_day)
    # day 0 is the earliest span's date: no history exists before it
    ranges = {"history": (max(0, split.first_day - settings.history_days), split.first_day - 1),
              "train": split.train_range, "delay": split.delay_range, "eval": split.eval_range}
    spans, dates = {}, {}
    for window, (first, last) in ranges.items():
        if first > last:  # an empty window (no delay, no history)
            continue
        spans[window] = (calendar.span_of_day(first), calendar.span_of_day(last))
        dates[window] = (calendar.date_of_day(first).isoformat(), calendar.date_of_day(last).isoformat())
    return TimeSplitPlan(settings, calendar.origin_seconds, end_day, spans, dates)


def spans_to_read(plan: TimeSplitPlan) -> list[tuple[int, bool]]:
    """(span, is_target) for every span of the history, train, delay and eval windows, in order."""
    out: list[tuple[int, bool]] = []
    for window in ("history", "train", "delay", "eval"):
        if window in plan.spans:
            first, last = plan.spans[window]
            out.extend((span, window in SPLITS) for span in range(first, last + 1))
    return out


def tag_window(pair: tuple[bool, Row], plan: TimeSplitPlan) -> tuple[bool, Row]:
    """A row is a target when its own day is in the train or eval window; every other row is context."""
    return plan.window_of(pair[1]) in SPLITS, pair[1]


def remove_known_compromised(pairs: Iterable[tuple[bool, Row]], plan: TimeSplitPlan) -> Iterator[tuple[bool, Row]]:
    """One card's (is_target, row) pairs: eval rows of a card already known compromised become context.

    They stay in the pipeline as context (they happened, so they count in other rows' windows and
    histories) but are not emitted. Only the train, delay and eval days are looked at, as the book does.
    """
    pairs = list(pairs)
    split, settings = plan.split, plan.settings
    days = [plan.day_of(row) for _, row in pairs]
    inside = [i for i, day in enumerate(days) if day is not None and split.window_of(day) is not None]
    flags = np.zeros(len(pairs), dtype=bool)
    if inside:
        flags[inside] = known_compromised(
            np.array([days[i] for i in inside], dtype=np.int64),
            np.array([str(pairs[i][1].get(settings.card_key)) for i in inside]),
            np.array([int(pairs[i][1].get(settings.label) or 0) for i in inside], dtype=np.int64),
            split)
    for (is_target, row), known in zip(pairs, flags, strict=True):
        yield (is_target and not bool(known)), row


class _CountKnown(beam.DoFn):
    def __init__(self) -> None:
        self._removed = Metrics.counter(METRICS_NAMESPACE, EVAL_KNOWN_COMPROMISED)

    def process(self, keyed: tuple[Any, Iterable[tuple[bool, Row]]], plan: TimeSplitPlan
                ) -> Iterator[tuple[bool, Row]]:
        pairs = list(keyed[1])
        for (was_target, row), (is_target, _) in zip(pairs, remove_known_compromised(pairs, plan), strict=True):
            if was_target and not is_target:
                self._removed.inc()
            yield is_target, row


class RemoveKnownCompromised(beam.PTransform):
    """(is_target, row) pairs -> the same pairs, known-compromised eval rows turned into context."""

    def __init__(self, plan: TimeSplitPlan) -> None:
        super().__init__()
        self._plan = plan

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        grouped, without = group_by_column(pairs, self._plan.settings.card_key, "Card")
        checked = grouped | "KnownCompromised" >> beam.ParDo(_CountKnown(), self._plan)
        return (checked, without) | "Merge" >> beam.Flatten()


class _CountWindow(beam.DoFn):
    def __init__(self, split: str, label: str) -> None:
        self._label = label
        self._rows = Metrics.counter(METRICS_NAMESPACE, TRAIN_ROWS if split == "train" else EVAL_ROWS)
        self._frauds = Metrics.counter(METRICS_NAMESPACE, TRAIN_FRAUDS if split == "train" else EVAL_FRAUDS)

    def process(self, row: Row) -> Iterator[Row]:
        self._rows.inc()
        if row.get(self._label) == 1:
            self._frauds.inc()
        yield row


def split_by_window(rows: beam.PCollection, plan: TimeSplitPlan) -> dict[str, beam.PCollection]:
    """Emitted rows -> {'train': rows of the train days, 'eval': rows of the eval days}, counted."""
    train, evaluation = rows | "ByWindow" >> beam.Partition(
        lambda row, _: 0 if plan.window_of(row) == "train" else 1, 2)
    label = plan.settings.label
    return {"train": train | "CountTrain" >> beam.ParDo(_CountWindow("train", label)),
            "eval": evaluation | "CountEval" >> beam.ParDo(_CountWindow("eval", label))}


def record_properties(plan: TimeSplitPlan, counts: Mapping[str, int]) -> dict[str, int | str]:
    """The custom properties an Examples artifact of a time split carries (dates, spans, counts)."""
    props: dict[str, int | str] = {"time_split": plan.settings.model_dump_json(),
                                   "time_split_origin_seconds": plan.origin_seconds}
    for window in ("history", "train", "delay", "eval"):
        if window in plan.spans:
            props[f"{window}_first_span"], props[f"{window}_last_span"] = plan.spans[window]
            props[f"{window}_first_date"], props[f"{window}_last_date"] = plan.dates[window]
    for name in (TRAIN_ROWS, TRAIN_FRAUDS, EVAL_ROWS, EVAL_FRAUDS, EVAL_KNOWN_COMPROMISED):
        props[name] = int(counts.get(name, 0))
    return props


__all__ = ["DAY_SECONDS", "SpanCalendar", "TimeSplitPlan", "TimeSplitSettings", "plan_time_split"]
