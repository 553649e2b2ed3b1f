"""The Fraud Detection Handbook's baseline features, causal under label delay, in pure numpy.

Customer windows use a card's own earlier transactions (its amounts are known at once); terminal
windows use labels, which arrive `delay_days` late, so they end `delay_days` before the transaction.
Each function takes one group's rows (one card, one terminal) already sorted by time, and is
vectorized with `np.searchsorted`; the `grouped_*` helpers run them over many groups at once.
Windows are exact: (t - n days, t] for a customer, (t - d - n days, t - d] for a terminal, as the
book's pandas time-based rolling windows are.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from errors import EsteiraError

DAY_SECONDS = 86_400
CUSTOMER_WINDOWS_DAYS: tuple[int, ...] = (1, 7, 30)
TERMINAL_WINDOWS_DAYS: tuple[int, ...] = (1, 7, 30)
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


class WindowFeatureError(EsteiraError, ValueError):
    """Input the window features cannot be computed from (the message names the problem and the fix)."""


def _as_1d(name: str, values: np.ndarray, dtype: type | None = None) -> np.ndarray:
    array = np.asarray(values) if dtype is None else np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise WindowFeatureError(f"{name} must be one-dimensional, got shape {array.shape}; "
                                 "pass one value per transaction")
    return array


def _check_lengths(**arrays: np.ndarray) -> int:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise WindowFeatureError(f"mismatched lengths {lengths}: pass one value per transaction in every array")
    return next(iter(lengths.values()))


def _check_sorted(times: np.ndarray) -> None:
    if times.size > 1 and np.any(np.diff(times) < 0):
        raise WindowFeatureError("times must be sorted ascending within the group: sort the group's rows by "
                                 "(time, transaction_id) first, or use the grouped_* helpers, which sort")


def _check_windows(windows_days: Sequence[float]) -> tuple[float, ...]:
    windows = tuple(windows_days)
    if not windows or any(not np.isfinite(n) or n <= 0 for n in windows):
        raise WindowFeatureError(f"windows_days must be positive day counts, got {windows!r}; e.g. (1, 7, 30)")
    return windows


def _day_label(n: float) -> str:
    return f"{n:g}d"


def calendar_features(times: np.ndarray) -> dict[str, np.ndarray]:
    """Weekend (UTC weekday >= 5) and night (UTC hour <= 6) flags of epoch-second timestamps."""
    seconds = _as_1d("times", times, np.float64)
    days = np.floor(seconds / DAY_SECONDS)
    weekday = (days.astype(np.int64) + _EPOCH_WEEKDAY) % 7
    hour = np.floor((seconds - days * DAY_SECONDS) / 3600).astype(np.int64)
    return {"during_weekend": (weekday >= 5).astype(np.int64), "during_night": (hour <= 6).astype(np.int64)}


def customer_window_features(times: np.ndarray, amounts: np.ndarray,
                             windows_days: Sequence[float] = CUSTOMER_WINDOWS_DAYS) -> dict[str, np.ndarray]:
    """Count and mean amount of one card's transactions over (t - n days, t], the current row included.

    Rows must be sorted by (time, transaction_id); a row sees the rows before it and itself, never a
    later row, even one at the same second.
    """
    t = _as_1d("times", times, np.float64)
    a = _as_1d("amounts", amounts, np.float64)
    n_rows = _check_lengths(times=t, amounts=a)
    windows = _check_windows(windows_days)
    _check_sorted(t)
    position = np.arange(n_rows)
    cumulative = np.concatenate([[0.0], np.cumsum(a)])
    out: dict[str, np.ndarray] = {}
    for n in windows:
        first = np.searchsorted(t, t - n * DAY_SECONDS, side="right")
        count = (position + 1 - first).astype(np.float64)
        total = cumulative[position + 1] - cumulative[first]
        out[f"customer_nb_tx_{_day_label(n)}"] = count
        out[f"customer_avg_amount_{_day_label(n)}"] = total / count
    return out


def terminal_window_features(times: np.ndarray, labels: np.ndarray, delay_days: float,
                             windows_days: Sequence[float] = TERMINAL_WINDOWS_DAYS) -> dict[str, np.ndarray]:
    """Count and fraud rate of one terminal's transactions over (t - d - n days, t - d].

    Only labels older than the delay d are used, so a fraud is counted once it would be known; the
    risk is frauds / transactions, 0 where the window is empty. d must be > 0: a transaction's own
    label is never known when it is scored.
    """
    t = _as_1d("times", times, np.float64)
    y = _as_1d("labels", labels, np.float64)
    _check_lengths(times=t, labels=y)
    windows = _check_windows(windows_days)
    if not np.isfinite(delay_days) or delay_days <= 0:
        raise WindowFeatureError(f"delay_days must be > 0, got {delay_days!r}: a label is only known some days "
                                 "after its transaction (the handbook uses 7)")
    if y.size and not np.all((y == 0) | (y == 1)):
        raise WindowFeatureError("labels must be 0 or 1 (is_fraud); found other values")
    _check_sorted(t)
    cumulative = np.concatenate([[0.0], np.cumsum(y)])
    end_time = t - delay_days * DAY_SECONDS
    last = np.searchsorted(t, end_time, side="right")
    out: dict[str, np.ndarray] = {}
    for n in windows:
        first = np.searchsorted(t, end_time - n * DAY_SECONDS, side="right")
        count = (last - first).astype(np.float64)
        frauds = cumulative[last] - cumulative[first]
        risk = np.divide(frauds, count, out=np.zeros_like(frauds), where=count > 0)
        out[f"terminal_nb_tx_{_day_label(n)}"] = count
        out[f"terminal_risk_{_day_label(n)}"] = risk
    return out


def window_feature_names(customer_windows_days: Sequence[float] = CUSTOMER_WINDOWS_DAYS,
                         terminal_windows_days: Sequence[float] = TERMINAL_WINDOWS_DAYS) -> list[str]:
    """Feature names in the book's column order: calendar, then customer, then terminal windows."""
    names = ["during_weekend", "during_night"]
    for n in customer_windows_days:
        names += [f"customer_nb_tx_{_day_label(n)}", f"customer_avg_amount_{_day_label(n)}"]
    for n in terminal_windows_days:
        names += [f"terminal_nb_tx_{_day_label(n)}", f"terminal_risk_{_day_label(n)}"]
    return names


WINDOW_FEATURE_NAMES: list[str] = window_feature_names()


def _group_order(groups: np.ndarray, times: np.ndarray, tiebreak: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Row order sorted by (group, time, tiebreak) and the start offset of each group in that order."""
    keys = [times] if tiebreak is None else [tiebreak, times]
    _, codes = np.unique(groups, return_inverse=True)
    codes = codes.reshape(-1)
    order = np.lexsort((*keys, codes))
    sorted_codes = codes[order]
    starts = (np.flatnonzero(np.concatenate([[True], sorted_codes[1:] != sorted_codes[:-1]])) if order.size
              else np.array([], int))
    return order, np.append(starts, order.size)


def _grouped(function: Callable[..., dict[str, np.ndarray]], groups: np.ndarray, times: np.ndarray,
             values: np.ndarray, tiebreak: np.ndarray | None, **kwargs: Any) -> dict[str, np.ndarray]:
    g = _as_1d("groups", groups)
    t = _as_1d("times", times, np.float64)
    v = _as_1d("values", values, np.float64)
    tb = None if tiebreak is None else _as_1d("tiebreak", tiebreak)
    _check_lengths(groups=g, times=t, values=v, **({} if tb is None else {"tiebreak": tb}))
    order, bounds = _group_order(g, t, tb)
    out: dict[str, np.ndarray] = {}
    for start, stop in itertools.pairwise(bounds):
        rows = order[start:stop]
        for name, column in function(t[rows], v[rows], **kwargs).items():
            out.setdefault(name, np.empty(t.size, dtype=np.float64))[rows] = column
    if not out:  # no rows: still return every key, empty
        out = {name: np.empty(0, np.float64) for name in function(np.empty(0), np.empty(0), **kwargs)}
    return out


def grouped_customer_window_features(cards: np.ndarray, times: np.ndarray, amounts: np.ndarray,
                                     transaction_ids: np.ndarray | None = None,
                                     windows_days: Sequence[float] = CUSTOMER_WINDOWS_DAYS) -> dict[str, np.ndarray]:
    """`customer_window_features` for every card at once; rows in any order, results in input order.

    Ties in time are ordered by `transaction_ids` when given (else by input position).
    """
    tiebreak = np.arange(len(np.asarray(times))) if transaction_ids is None else transaction_ids
    return _grouped(customer_window_features, cards, times, amounts, tiebreak, windows_days=windows_days)


def grouped_terminal_window_features(terminals: np.ndarray, times: np.ndarray, labels: np.ndarray,
                                     delay_days: float,
                                     windows_days: Sequence[float] = TERMINAL_WINDOWS_DAYS) -> dict[str, np.ndarray]:
    """`terminal_window_features` for every terminal at once; rows in any order, results in input order."""
    return _grouped(terminal_window_features, terminals, times, labels, None,
                    delay_days=delay_days, windows_days=windows_days)
