"""The ExampleGen's feature settings (`sequence:` and `window_features:`), free of Beam.

The pipeline config validates these sections before anything heavy is imported, so a typo in
them is reported in about a second; the Beam transforms that use them live in
`sequence_features.py` and `window_features.py`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.fraud.window_features import CUSTOMER_WINDOWS_DAYS, TERMINAL_WINDOWS_DAYS, WINDOW_FEATURE_NAMES

Kind = Literal["int", "float", "bytes"]
KIND_OF_DTYPE: dict[str, Kind] = {"string": "bytes", "int": "int", "float": "float", "timestamp": "int"}
CALENDAR_FEATURES = ("during_weekend", "during_night")


class SequenceFeaturesConfig(BaseModel):
    """The `sequence:` settings: which output columns make up a card's history, and how long it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = "card_id"
    time: str = "timestamp"
    tiebreak: str | None = "transaction_id"
    length: int = Field(default=10, ge=1, le=1000)
    features: list[str] = Field(default_factory=lambda: ["amount", "merchant_category", "distance_from_home_km"])
    lookback_spans: int = Field(default=0, ge=0)
    prefix: str = "history_"

    def feature_kinds(self, output_columns: Mapping[str, str]) -> dict[str, Kind]:
        """Names and kinds of the history features, given the policy's output columns and types."""
        for column in [self.key, self.time, *self.features, *([self.tiebreak] if self.tiebreak else [])]:
            if column not in output_columns:
                raise ValueError(
                    f"sequence features use column {column!r}, which the privacy policy does not output; "
                    f"use one of {sorted(output_columns)}"
                )
        if output_columns[self.time] not in ("timestamp", "int", "float"):
            raise ValueError(
                f"sequence.time column {self.time!r} must have dtype timestamp, int or float "
                f"(seconds), not {output_columns[self.time]}"
            )
        kinds: dict[str, Kind] = {
            f"{self.prefix}{name}": KIND_OF_DTYPE[output_columns[name]] for name in self.features
        }
        kinds[f"{self.prefix}seconds_since"] = "float"
        kinds[f"{self.prefix}mask"] = "int"
        kinds[f"{self.prefix}count"] = "int"
        clash = sorted(set(kinds) & set(output_columns))
        if clash:
            raise ValueError(f"history feature names {clash} collide with output columns; change sequence.prefix")
        return kinds


class WindowFeaturesConfig(BaseModel):
    """The `window_features:` settings: which output columns the book's features are computed from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    card_key: str = Field(default="card_id", description="customer windows group by this column")
    terminal_key: str = Field(default="terminal_id", description="terminal windows group by this column")
    amount: str = Field(default="amount", description="transaction amount (customer mean amounts)")
    label: str = Field(default="is_fraud", description="0/1 fraud label (terminal risk, once known)")
    time: str = Field(default="timestamp", description="epoch seconds of the transaction")
    tiebreak: str | None = Field(default="transaction_id",
                                 description="orders a card's transactions at the same second")
    label_delay_days: int = Field(
        default=7, ge=1, description="days until a label is known; terminal windows end this long before "
                                     "the transaction (the book: 7)")

    def feature_kinds(self, output_columns: Mapping[str, str]) -> dict[str, Kind]:
        """Names and kinds of the emitted features, after checking the columns they are computed from."""
        for key in ("card_key", "terminal_key", "amount", "label", "time", "tiebreak"):
            column = getattr(self, key)
            if column is not None and column not in output_columns:
                raise ValueError(f"window_features.{key}: column {column!r} is not produced by the privacy "
                                 f"policy; use one of {sorted(output_columns)}")
        for key, allowed in (("time", ("timestamp", "int", "float")), ("amount", ("float", "int")),
                             ("label", ("int",))):
            dtype = output_columns[getattr(self, key)]
            if dtype not in allowed:
                raise ValueError(f"window_features.{key}: column {getattr(self, key)!r} has dtype {dtype}; "
                                 f"it needs {' or '.join(allowed)} (set its dtype in privacy.columns)")
        kinds = window_feature_kinds()
        clash = sorted(set(kinds) & set(output_columns))
        if clash:
            raise ValueError(f"window feature names {clash} collide with output columns of the privacy policy; "
                             "rename those output columns")
        return kinds

    @property
    def lookback_days(self) -> int:
        """History a row's windows reach back: the longest customer window, or terminal window plus delay."""
        return int(np.ceil(max(max(CUSTOMER_WINDOWS_DAYS), max(TERMINAL_WINDOWS_DAYS) + self.label_delay_days)))


def window_feature_kinds() -> dict[str, Kind]:
    """Every window feature as the examples carry it: calendar flags int64, counts and rates float."""
    names = list(dict.fromkeys([*CALENDAR_FEATURES, *WINDOW_FEATURE_NAMES]))
    return {name: ("int" if name in CALENDAR_FEATURES else "float") for name in names}

