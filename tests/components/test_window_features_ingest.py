"""Window features and the time split in the ingestion's Beam steps: causal, and under label delay.

The leak tests run the Beam transforms on small in-memory rows: a future row, or a label that has
not arrived yet (inside the delay), must change no feature of an earlier transaction.
"""
from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import apache_beam as beam
import pytest

from components.anonymizing_example_gen.sequence_features import AddCardHistory, SequenceFeaturesConfig
from components.anonymizing_example_gen.time_windows import (
    SpanCalendar,
    TimeSplitSettings,
    plan_time_split,
    remove_known_compromised,
    spans_to_read,
    tag_window,
)
from components.anonymizing_example_gen.window_features import (
    AddWindowFeatures,
    WindowFeaturesConfig,
    window_feature_kinds,
)
from models.fraud.window_features import WINDOW_FEATURE_NAMES

DAY = 86_400
ORIGIN = 1_522_540_800  # 2018-04-01T00:00:00Z, the handbook's day 0
OUTPUTS = {"transaction_id": "int", "timestamp": "timestamp", "card_id": "string", "terminal_id": "string",
           "amount": "float", "is_fraud": "int"}
WINDOWS = WindowFeaturesConfig(label_delay_days=7)
SEQUENCE = SequenceFeaturesConfig(length=4, features=["amount"])


def transactions(n: int = 240, days: int = 40, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    times = sorted(ORIGIN + rng.randrange(days * DAY) for _ in range(n))
    return [{"transaction_id": i, "timestamp": t, "card_id": f"card{rng.randrange(4)}",
             "terminal_id": f"term{rng.randrange(3)}", "amount": round(rng.uniform(1, 200), 2),
             "is_fraud": int(rng.random() < 0.2)} for i, t in enumerate(times)]


def featurize(rows: list[dict], tmp_path: Path, name: str) -> dict[int, dict]:
    """Window features then card histories, as the ingestion chains them; every row a target."""
    kinds = SEQUENCE.feature_kinds(OUTPUTS)
    out = tmp_path / name
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        _ = (pipeline
             | beam.Create([(True, row) for row in rows])
             | AddWindowFeatures(WINDOWS)
             | AddCardHistory(SEQUENCE, kinds)
             | beam.Map(json.dumps)
             | beam.io.WriteToText(str(out)))
    result = {}
    for path in tmp_path.glob(f"{name}*"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            result[row["transaction_id"]] = row
    return result


def features_of(row: dict) -> dict:
    return {k: v for k, v in row.items() if k in window_feature_kinds() or k.startswith("history_")}


def test_every_window_feature_is_emitted_with_its_kind() -> None:
    kinds = WINDOWS.feature_kinds(OUTPUTS)
    assert set(WINDOW_FEATURE_NAMES) <= set(kinds)
    assert kinds["during_weekend"] == kinds["during_night"] == "int"
    assert kinds["terminal_risk_30d"] == kinds["customer_avg_amount_7d"] == "float"


def test_config_names_columns_the_policy_does_not_output() -> None:
    with pytest.raises(ValueError, match=r"window_features.terminal_key: column 'terminal_id' is not produced"):
        WINDOWS.feature_kinds({k: v for k, v in OUTPUTS.items() if k != "terminal_id"})
    with pytest.raises(ValueError, match=r"window_features.label: .*dtype string; it needs int"):
        WINDOWS.feature_kinds({**OUTPUTS, "is_fraud": "string"})


def test_a_future_row_changes_no_feature_of_an_earlier_transaction(tmp_path: Path) -> None:
    rows = transactions()
    cut = rows[len(rows) // 2]["timestamp"]
    before = featurize(rows, tmp_path, "base")
    # new rows after the cut on every card and terminal, labelled fraud, large amounts
    future = [{"transaction_id": 1000 + i, "timestamp": cut + 1 + i * 3600, "card_id": f"card{i % 4}",
               "terminal_id": f"term{i % 3}", "amount": 5000.0, "is_fraud": 1} for i in range(24)]
    after = featurize(rows + future, tmp_path, "future")
    earlier = [r["transaction_id"] for r in rows if r["timestamp"] <= cut]
    assert earlier and all(features_of(before[t]) == features_of(after[t]) for t in earlier)
    later = [r["transaction_id"] for r in rows if r["timestamp"] > cut + 24 * 3600]
    assert any(features_of(before[t]) != features_of(after[t]) for t in later), "the future rows must matter later"


def test_a_label_inside_the_delay_changes_no_feature_but_an_older_one_does(tmp_path: Path) -> None:
    rows = transactions()
    scored = rows[-1]["timestamp"]  # the latest transaction: everything is earlier
    base = featurize(rows, tmp_path, "labels")
    recent = [dict(r, is_fraud=1 - r["is_fraud"]) if r["timestamp"] > scored - 7 * DAY else r for r in rows]
    flipped = featurize(recent, tmp_path, "recent")
    assert all(features_of(base[r["transaction_id"]]) == features_of(flipped[r["transaction_id"]]) for r in rows)
    # a label older than the delay is known, and so reaches the terminal risk of the latest transactions
    old = [dict(r, is_fraud=1 - r["is_fraud"]) if scored - 9 * DAY < r["timestamp"] <= scored - 7 * DAY else r
           for r in rows]
    changed = featurize(old, tmp_path, "old")
    assert any(base[r["transaction_id"]]["terminal_risk_7d"] != changed[r["transaction_id"]]["terminal_risk_7d"]
               for r in rows[-20:])


def test_terminal_risk_counts_only_labels_older_than_the_delay(tmp_path: Path) -> None:
    rows = transactions()
    out = featurize(rows, tmp_path, "brute")
    for row in rows[-30:]:
        t, terminal = row["timestamp"], row["terminal_id"]
        window = [r for r in rows if r["terminal_id"] == terminal and t - 37 * DAY < r["timestamp"] <= t - 7 * DAY]
        frauds = sum(r["is_fraud"] for r in window)
        assert out[row["transaction_id"]]["terminal_nb_tx_30d"] == len(window)
        assert out[row["transaction_id"]]["terminal_risk_30d"] == pytest.approx(frauds / len(window) if window else 0)
        mine = [r for r in rows if r["card_id"] == row["card_id"] and t - DAY < r["timestamp"] <= t
                and (r["timestamp"], r["transaction_id"]) <= (t, row["transaction_id"])]
        assert out[row["transaction_id"]]["customer_nb_tx_1d"] == len(mine)


def plan(end_span: int = 40):
    settings = TimeSplitSettings(train_days=7, delay_days=7, eval_days=7, history_days=37)
    calendar = SpanCalendar({1: date(2018, 4, 1)}, "manifest")  # span 1 = day 0, one span per day
    return plan_time_split(settings, calendar, end_span)


def test_windows_are_consecutive_days_ending_on_the_resolved_span() -> None:
    p = plan(40)
    assert p.spans == {"history": (1, 19), "train": (20, 26), "delay": (27, 33), "eval": (34, 40)}
    assert p.dates["train"] == ("2018-04-20", "2018-04-26") and p.dates["eval"] == ("2018-05-04", "2018-05-10")
    read = spans_to_read(p)
    assert [s for s, target in read if target] == [*range(20, 27), *range(34, 41)]
    assert [s for s, target in read if not target] == [*range(1, 20), *range(27, 34)]
    row = {"timestamp": ORIGIN + 19 * DAY + 5}  # day 19 = span 20
    assert tag_window((False, row), p) == (True, row) and p.window_of(row) == "train"
    assert not tag_window((True, {"timestamp": ORIGIN + 27 * DAY}), p)[0]  # a delay day: context


def test_known_compromised_eval_rows_become_context() -> None:
    p = plan(40)

    def row(day: int, fraud: int = 0, tid: int = 0) -> tuple[bool, dict]:
        r = {"transaction_id": tid, "timestamp": ORIGIN + day * DAY + 100, "card_id": "c", "is_fraud": fraud}
        return tag_window((False, r), p)

    # days: train 19..25, delay 26..32, eval 33..39; a fraud on delay day 27 is known from eval day 27 + 7 + 1
    pairs = [row(19), row(27, fraud=1, tid=1), row(32, tid=2), row(33, tid=3), row(34, tid=4),
             row(35, tid=5), row(38, tid=6)]
    out = {r["transaction_id"]: target for target, r in remove_known_compromised(pairs, p)}
    assert out == {0: True, 1: False, 2: False, 3: True, 4: True, 5: False, 6: False}
    # a fraud in the train window: every eval row of the card is removed
    pairs = [row(20, fraud=1, tid=0), row(33, tid=1), row(39, tid=2)]
    assert [target for target, _ in remove_known_compromised(pairs, p)] == [True, False, False]
