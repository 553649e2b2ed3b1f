"""Out-of-time split windows and the handbook's removal of cards already known compromised."""
from __future__ import annotations

import numpy as np
import pytest

from models.fraud.time_split import TimeSplit, TimeSplitError, day_index, known_compromised


def test_windows_are_contiguous_and_end_on_end_day() -> None:
    split = TimeSplit(train_days=7, delay_days=7, eval_days=7, end_day=135)
    assert split.eval_range == (129, 135)
    assert split.delay_range == (122, 128)
    assert split.train_range == (115, 121)
    assert split.first_day == 115
    assert [split.window_of(d) for d in (114, 115, 121, 122, 128, 129, 135, 136)] == \
        [None, "train", "train", "delay", "delay", "eval", "eval", None]
    assert split.windows_of(np.array([114, 121, 122, 135])).tolist() == ["", "train", "delay", "eval"]


def test_handbook_single_split_dates() -> None:
    # day 0 = 2018-04-01; train 2018-07-25..31 are days 115..121, test 08-08..08-14 days 129..135
    origin = int(np.datetime64("2018-04-01T00:00:00", "s").astype(np.int64))
    times = np.array([np.datetime64(f"2018-{md}T{hms}", "s").astype(np.int64)
                      for md, hms in (("07-25", "00:00:00"), ("07-31", "23:59:59"), ("08-08", "00:00:01"),
                                      ("08-14", "23:59:59"))])
    assert day_index(times, origin).tolist() == [115, 121, 129, 135]
    assert day_index(np.array([origin - 1]), origin).tolist() == [-1]


def test_zero_delay_has_an_empty_delay_window() -> None:
    split = TimeSplit(train_days=2, delay_days=0, eval_days=1, end_day=2)
    assert split.train_range == (0, 1) and split.eval_range == (2, 2)
    assert split.window_of(1) == "train" and split.window_of(2) == "eval"


def test_bad_splits_name_the_field() -> None:
    with pytest.raises(TimeSplitError, match="train_days must be an integer >= 1"):
        TimeSplit(train_days=0, delay_days=7, eval_days=7, end_day=30)
    with pytest.raises(TimeSplitError, match="delay_days"):
        TimeSplit(train_days=7, delay_days=-1, eval_days=7, end_day=30)
    with pytest.raises(TimeSplitError, match="starts before day 0"):
        TimeSplit(train_days=7, delay_days=7, eval_days=7, end_day=19)
    split = TimeSplit(train_days=7, delay_days=7, eval_days=7, end_day=20)
    split.check_within(0, 20)
    with pytest.raises(TimeSplitError, match=r"data has days 0\.\.19"):
        split.check_within(0, 19)


def test_known_compromised_follows_the_book_day_by_day() -> None:
    # train days 0..1, delay 2 (days 2..3), eval days 4..6
    split = TimeSplit(train_days=2, delay_days=2, eval_days=3, end_day=6)
    rows = [  # (day, card, label)
        (1, "A", 1),  # fraud in train -> A known on every eval day
        (4, "A", 0), (6, "A", 0),
        (2, "B", 1),  # fraud on delay day 2: known from eval day 5 (2 <= 5 - 2 - 1) on
        (4, "B", 0), (5, "B", 0), (6, "B", 1),
        (3, "C", 1),  # fraud on day 3: known only from day 6
        (5, "C", 1), (6, "C", 0),
        (4, "D", 1),  # fraud inside eval itself on day 4: known from day 7, outside this split
        (6, "D", 0),
        (-1, "E", 1),  # before the train window: not looked at, as in the book
        (5, "E", 0),
        (0, "F", 0), (5, "F", 0),
    ]
    days, cards, labels = (np.array(c) for c in zip(*rows, strict=True))
    known = known_compromised(days, cards, labels, split)
    expected = {(4, "A"): True, (6, "A"): True, (4, "B"): False, (5, "B"): True, (6, "B"): True,
                (5, "C"): False, (6, "C"): True, (6, "D"): False, (5, "E"): False, (5, "F"): False}
    for (day, card, _), flag in zip(rows, known, strict=True):
        assert flag == expected.get((day, card), False), (day, card)


def test_known_compromised_is_a_mask_over_all_rows_and_checks_lengths() -> None:
    split = TimeSplit(train_days=1, delay_days=1, eval_days=1, end_day=2)
    assert known_compromised(np.array([0, 2]), np.array([1, 1]), np.array([1, 0]), split).tolist() == [False, True]
    assert known_compromised(np.array([], int), np.array([]), np.array([]), split).size == 0
    with pytest.raises(TimeSplitError, match="mismatched"):
        known_compromised(np.array([0, 1]), np.array([1]), np.array([1, 0]), split)
