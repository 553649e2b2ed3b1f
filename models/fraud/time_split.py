"""Out-of-time split with a label delay, and the handbook's removal of cards already known compromised.

A fraud model is trained on earlier days and judged on later ones; the days in between are skipped
because their labels would not have arrived yet when the model is trained. Days are integer indices
from an origin (the handbook's day 0 is 2018-04-01).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from errors import EsteiraError

DAY_SECONDS = 86_400

Window = Literal["train", "delay", "eval"]


class TimeSplitError(EsteiraError, ValueError):
    """A split that cannot be built or applied (the message names the field and the fix)."""


@dataclass(frozen=True)
class TimeSplit:
    """train_days, then delay_days skipped, then eval_days ending on end_day (inclusive day indices)."""

    train_days: int
    delay_days: int
    eval_days: int
    end_day: int

    def __post_init__(self) -> None:
        for name, least in (("train_days", 1), ("delay_days", 0), ("eval_days", 1), ("end_day", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise TimeSplitError(f"{name} must be an integer >= {least}, got {value!r}")
        if self.first_day < 0:
            raise TimeSplitError(
                f"the split starts before day 0 (first train day {self.first_day}): end_day {self.end_day} "
                f"leaves room for at most {self.end_day + 1} days; move end_day later or shorten "
                "train_days/delay_days/eval_days")

    @property
    def eval_range(self) -> tuple[int, int]:
        return self.end_day - self.eval_days + 1, self.end_day

    @property
    def delay_range(self) -> tuple[int, int]:
        """Empty (first > last) when delay_days is 0."""
        first_eval = self.eval_range[0]
        return first_eval - self.delay_days, first_eval - 1

    @property
    def train_range(self) -> tuple[int, int]:
        first_delay = self.delay_range[0]
        return first_delay - self.train_days, first_delay - 1

    @property
    def first_day(self) -> int:
        return self.train_range[0]

    def window_of(self, day: int) -> Window | None:
        """Which window a day falls in, None outside the split."""
        for name, (first, last) in (("train", self.train_range), ("delay", self.delay_range),
                                    ("eval", self.eval_range)):
            if first <= day <= last:
                return name  # type: ignore[return-value]
        return None

    def windows_of(self, days: np.ndarray) -> np.ndarray:
        """`window_of` for an array of days: an array of "train", "delay", "eval" or "" (outside)."""
        d = np.asarray(days)
        out = np.full(d.shape, "", dtype="<U5")
        for name, (first, last) in (("train", self.train_range), ("delay", self.delay_range),
                                    ("eval", self.eval_range)):
            out[(d >= first) & (d <= last)] = name
        return out

    def check_within(self, first_available_day: int, last_available_day: int) -> None:
        """Refuse a split whose days fall outside the data's days."""
        if self.first_day < first_available_day or self.end_day > last_available_day:
            raise TimeSplitError(
                f"the split needs days {self.first_day}..{self.end_day} but the data has days "
                f"{first_available_day}..{last_available_day}: set end_day within the data and leave "
                f"train_days + delay_days + eval_days = {self.train_days + self.delay_days + self.eval_days} "
                "days of history before it")


def day_index(times: np.ndarray, origin_seconds: int) -> np.ndarray:
    """Whole days since the origin: floor((t - origin) / 86400), as int64."""
    t = np.asarray(times, dtype=np.float64)
    return np.floor((t - origin_seconds) / DAY_SECONDS).astype(np.int64)


def known_compromised(days: np.ndarray, cards: np.ndarray, labels: np.ndarray, split: TimeSplit) -> np.ndarray:
    """Eval rows whose card a fraud team would already know as compromised (the handbook's rule).

    A card is known when it had a fraud in the train window, or, day by day, a fraud on a day from
    the train window's start up to (the eval row's day - delay_days - 1): that label has arrived by
    then. Days before the train window are not looked at, as in the book. Non-eval rows get False.
    """
    d = np.asarray(days)
    c = np.asarray(cards)
    y = np.asarray(labels)
    lengths = {"days": d.shape, "cards": c.shape, "labels": y.shape}
    if len(set(lengths.values())) > 1 or d.ndim != 1:
        raise TimeSplitError(f"mismatched or non-1-D inputs {lengths}: pass one day, card and label per row")
    out = np.zeros(d.size, dtype=bool)
    if d.size == 0:
        return out
    _, codes = np.unique(c, return_inverse=True)
    codes = codes.reshape(-1)
    fraud = (y == 1) & (d >= split.first_day)
    # earliest day on which each card had a counted fraud (beyond any day where there is none)
    first_fraud = np.full(codes.max() + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_fraud, codes[fraud], d[fraud].astype(np.int64))
    first_eval, last_eval = split.eval_range
    in_eval = (d >= first_eval) & (d <= last_eval)
    # the label of a fraud on day f is known on eval day e when f <= e - delay - 1; train frauds
    # (f <= train end = first_eval - delay - 1) therefore satisfy it for every eval day
    known_by = d.astype(np.int64) - split.delay_days - 1
    out[in_eval] = first_fraud[codes[in_eval]] <= known_by[in_eval]
    return out
