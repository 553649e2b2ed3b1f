"""The handbook's window features: exact window edges, and no leak from later rows or undelivered labels."""
from __future__ import annotations

import numpy as np
import pytest

from models.fraud.window_features import (
    DAY_SECONDS,
    WINDOW_FEATURE_NAMES,
    WindowFeatureError,
    calendar_features,
    customer_window_features,
    grouped_customer_window_features,
    grouped_terminal_window_features,
    terminal_window_features,
)

DAY = DAY_SECONDS
T0 = 1_522_540_800  # 2018-04-01T00:00:00Z, a Sunday


def test_calendar_flags_weekend_and_night_in_utc() -> None:
    times = np.array([T0 + 6 * 3600 + 3599,  # Sunday 06:59:59 -> weekend, night
                      T0 + 7 * 3600,         # Sunday 07:00 -> weekend, day
                      T0 + DAY + 12 * 3600,  # Monday noon
                      T0 + 6 * DAY + 23 * 3600,  # Saturday 23:00
                      T0 + 5 * DAY])         # Friday 00:00 -> night
    out = calendar_features(times)
    assert out["during_weekend"].tolist() == [1, 1, 0, 1, 0]
    assert out["during_night"].tolist() == [1, 0, 0, 0, 1]
    assert out["during_weekend"].dtype == np.int64


def test_customer_window_is_t_minus_n_days_exclusive_to_t_inclusive() -> None:
    # rows at exactly t - 1 day drop out of the 1-day window; one second later they are in
    times = np.array([0, 1, DAY, DAY + 1, 7 * DAY + 1, 8 * DAY + 1], dtype=float) + T0
    amounts = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    out = customer_window_features(times, amounts)
    assert out["customer_nb_tx_1d"].tolist() == [1, 2, 2, 2, 1, 1]
    # row 2 (t = DAY): window (0, DAY] holds rows 1 and 2 -> (20 + 30) / 2
    assert out["customer_avg_amount_1d"].tolist() == [10, 15, 25, 35, 50, 60]
    # row 4 (t = 7 DAY + 1): window (1, 7 DAY + 1] holds rows 2, 3, 4
    assert out["customer_nb_tx_7d"].tolist() == [1, 2, 3, 4, 3, 2]
    assert out["customer_avg_amount_7d"][4] == pytest.approx(40.0)
    assert out["customer_nb_tx_30d"].tolist() == [1, 2, 3, 4, 5, 6]
    assert out["customer_avg_amount_30d"][5] == pytest.approx(35.0)


def test_customer_window_ties_see_only_rows_before_in_order() -> None:
    times = np.array([T0, T0, T0], dtype=float)
    out = customer_window_features(times, np.array([1.0, 2.0, 6.0]))
    assert out["customer_nb_tx_1d"].tolist() == [1, 2, 3]
    assert out["customer_avg_amount_1d"].tolist() == [1, 1.5, 3]


def test_terminal_window_is_delayed_by_d_days_with_exact_edges() -> None:
    d = 7
    # rows: frauds at day 0 and day 1, legit at day 1 + 1s; then queries at later times
    times = np.array([0, DAY, DAY + 1, 8 * DAY, 8 * DAY + 1, 9 * DAY + 1, 38 * DAY + 1], dtype=float) + T0
    labels = np.array([1, 1, 0, 0, 0, 0, 0])
    out = terminal_window_features(times, labels, delay_days=d)
    # row 3 at t = 8 DAY: 1-day window (0, DAY] -> row 1 only (row 0 on the open edge, row 2 after it);
    # row 4 at t = 8 DAY + 1: (1, DAY + 1] -> rows 1 and 2
    assert out["terminal_nb_tx_1d"].tolist() == [0, 0, 0, 1, 2, 0, 0]
    assert out["terminal_risk_1d"].tolist() == [0, 0, 0, 1.0, 0.5, 0, 0]
    # row 5 at t = 9 DAY + 1: 1-day window (DAY + 1, 2 DAY + 1] is empty; 7-day (-5 DAY + 1, 2 DAY + 1] has rows 0..2
    assert out["terminal_nb_tx_7d"].tolist() == [0, 0, 0, 2, 3, 3, 0]
    assert out["terminal_risk_7d"][5] == pytest.approx(2 / 3)
    # row 6 at t = 38 DAY + 1: 30-day window (DAY + 1, 31 DAY + 1] holds rows 3..5; row 2, exactly on
    # the lower edge, is out, and so its fraud-free neighbours leave the risk at 0
    assert out["terminal_nb_tx_30d"].tolist() == [0, 0, 0, 2, 3, 3, 3]
    assert out["terminal_risk_30d"].tolist()[6] == 0.0
    # one second earlier, row 2 (DAY + 1) is inside: the lower edge is open, the upper edge closed
    early = terminal_window_features(np.append(times[:6], times[6] - 1), labels, delay_days=d)
    assert early["terminal_nb_tx_30d"][6] == 4


def test_terminal_features_never_use_a_label_inside_the_delay() -> None:
    rng = np.random.default_rng(7)
    times = np.sort(rng.uniform(0, 60 * DAY, 400)) + T0
    labels = (rng.random(400) < 0.2).astype(int)
    base = terminal_window_features(times, labels, delay_days=7)
    i = 300
    recent = times > times[i] - 7 * DAY  # labels not yet known at row i (and every later label)
    flipped = labels.copy()
    flipped[recent] = 1 - flipped[recent]
    changed = terminal_window_features(times, flipped, delay_days=7)
    for name in base:
        assert changed[name][i] == base[name][i], name
    # a label just older than the delay does count (the test above could fail)
    old = np.flatnonzero(times <= times[i] - 7 * DAY)[-1]
    flipped_old = labels.copy()
    flipped_old[old] = 1 - flipped_old[old]
    flipped = terminal_window_features(times, flipped_old, delay_days=7)
    assert flipped["terminal_risk_1d"][i] != base["terminal_risk_1d"][i]


def test_customer_features_ignore_every_later_row() -> None:
    rng = np.random.default_rng(3)
    times = np.sort(rng.integers(0, 40 * DAY, 300)).astype(float) + T0
    amounts = rng.uniform(1, 200, 300)
    base = customer_window_features(times, amounts)
    i = 150
    later_amounts = amounts.copy()
    later_amounts[i + 1:] *= 10  # later rows change (including any at the same second after row i)
    changed = customer_window_features(times, later_amounts)
    for name in base:
        np.testing.assert_array_equal(changed[name][: i + 1], base[name][: i + 1])
    assert not np.array_equal(changed["customer_avg_amount_1d"][i + 1:], base["customer_avg_amount_1d"][i + 1:])


def _loop_customer(times: np.ndarray, amounts: np.ndarray, n: int) -> tuple[list[float], list[float]]:
    counts, means = [], []
    for i in range(times.size):
        window = [j for j in range(i + 1) if times[j] > times[i] - n * DAY]
        counts.append(float(len(window)))
        means.append(float(np.mean(amounts[window])))
    return counts, means


def test_grouped_helpers_match_per_group_calls_and_a_plain_loop() -> None:
    rng = np.random.default_rng(11)
    n = 500
    cards = rng.choice(np.array(["a", "b", "c", "d"]), n)
    terminals = rng.integers(0, 6, n)
    times = rng.integers(0, 50 * DAY, n).astype(float) + T0
    amounts = rng.uniform(1, 100, n).round(2)
    labels = (rng.random(n) < 0.1).astype(int)
    ids = rng.permutation(n)
    cust = grouped_customer_window_features(cards, times, amounts, transaction_ids=ids)
    term = grouped_terminal_window_features(terminals, times, labels, delay_days=7)
    for card in "abcd":
        rows = np.flatnonzero(cards == card)
        rows = rows[np.lexsort((ids[rows], times[rows]))]
        single = customer_window_features(times[rows], amounts[rows])
        counts, means = _loop_customer(times[rows], amounts[rows], 7)
        np.testing.assert_allclose(cust["customer_nb_tx_7d"][rows], counts)
        np.testing.assert_allclose(cust["customer_avg_amount_7d"][rows], means)
        for name in single:
            np.testing.assert_allclose(cust[name][rows], single[name])
    for terminal in range(6):
        rows = np.flatnonzero(terminals == terminal)
        rows = rows[np.argsort(times[rows], kind="stable")]
        single = terminal_window_features(times[rows], labels[rows], delay_days=7)
        for name in single:
            np.testing.assert_allclose(term[name][rows], single[name])
    assert set(WINDOW_FEATURE_NAMES) == {"during_weekend", "during_night"} | set(cust) | set(term)
    assert len(WINDOW_FEATURE_NAMES) == 14


def test_bad_input_names_the_problem() -> None:
    with pytest.raises(WindowFeatureError, match="mismatched lengths"):
        customer_window_features(np.array([1.0, 2.0]), np.array([1.0]))
    with pytest.raises(WindowFeatureError, match="sorted"):
        customer_window_features(np.array([2.0, 1.0]), np.array([1.0, 1.0]))
    with pytest.raises(WindowFeatureError, match="delay_days must be > 0"):
        terminal_window_features(np.array([1.0]), np.array([0]), delay_days=0)
    with pytest.raises(WindowFeatureError, match="labels must be 0 or 1"):
        terminal_window_features(np.array([1.0]), np.array([2]), delay_days=7)
    with pytest.raises(WindowFeatureError, match="windows_days"):
        customer_window_features(np.array([1.0]), np.array([1.0]), windows_days=(0,))
    empty = customer_window_features(np.empty(0), np.empty(0))
    assert all(v.size == 0 for v in empty.values()) and len(empty) == 6
