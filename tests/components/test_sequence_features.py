"""Card histories: strictly earlier transactions only, ties excluded both ways, fixed-length lists."""
from __future__ import annotations

import random

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from components.anonymizing_example_gen.sequence_features import (
    AddCardHistory,
    SequenceFeaturesConfig,
    with_history,
)

OUTPUTS = {"transaction_id": "string", "card_id": "string", "timestamp": "timestamp", "amount": "float",
           "merchant_category": "string"}
CONFIG = SequenceFeaturesConfig(length=3, features=["amount", "merchant_category", "transaction_id"])
KINDS = CONFIG.feature_kinds(OUTPUTS)


def tx(tid: str, t: int, amount: float = 1.0, card: str | None = "c1", category: str | None = "grocery") -> dict:
    return {"transaction_id": tid, "card_id": card, "timestamp": t, "amount": amount, "merchant_category": category}


def histories(rows: list[dict], context: list[dict] = ()) -> dict[str, dict]:
    pairs = [(True, r) for r in rows] + [(False, r) for r in context]
    return {out["transaction_id"]: out for out in with_history(pairs, CONFIG, KINDS)}


def test_history_is_most_recent_first_padded_and_masked() -> None:
    out = histories([tx("a", 100, 10.0), tx("b", 160, 20.0, category="travel"), tx("c", 200, 30.0)])
    assert out["a"]["history_count"] == 0 and out["a"]["history_mask"] == [0, 0, 0]
    assert out["a"]["history_amount"] == [0.0, 0.0, 0.0] and out["a"]["history_merchant_category"] == ["", "", ""]
    c = out["c"]
    assert c["history_transaction_id"] == ["b", "a", ""]
    assert c["history_amount"] == [20.0, 10.0, 0.0]
    assert c["history_merchant_category"] == ["travel", "grocery", ""]
    assert c["history_seconds_since"] == [40.0, 100.0, 0.0]
    assert c["history_mask"] == [1, 1, 0] and c["history_count"] == 2
    assert c["amount"] == 30.0  # the row's own columns are kept


def test_history_keeps_only_the_last_n() -> None:
    out = histories([tx(str(i), 10 * i) for i in range(6)])
    assert out["5"]["history_transaction_id"] == ["4", "3", "2"] and out["5"]["history_count"] == 3


def test_input_order_does_not_matter() -> None:
    rows = [tx(str(i), 10 * i, float(i)) for i in range(6)]
    assert histories(rows) == histories(list(reversed(rows)))


def test_transactions_at_the_same_second_never_see_each_other() -> None:
    out = histories([tx("a", 100), tx("b", 200), tx("c", 200), tx("d", 200), tx("e", 300)])
    for tid in "bcd":
        assert out[tid]["history_transaction_id"] == ["a", "", ""]
    # later transactions see all of them, ties ordered by the tiebreak column (transaction_id)
    assert out["e"]["history_transaction_id"] == ["d", "c", "b"]


def test_context_rows_feed_histories_but_are_not_emitted() -> None:
    out = histories([tx("today", 1000)], context=[tx("yesterday", 500), tx("later-context", 2000)])
    assert list(out) == ["today"]
    assert out["today"]["history_transaction_id"] == ["yesterday", "", ""]


def test_missing_values_are_padded() -> None:
    out = histories([tx("a", 1, category=None), tx("b", 2)])
    assert out["b"]["history_merchant_category"] == ["", "", ""] and out["b"]["history_mask"] == [1, 0, 0]


def test_config_names_unknown_columns_and_bad_types() -> None:
    with pytest.raises(ValueError, match="column 'distance_from_home_km', which the privacy policy does not output"):
        SequenceFeaturesConfig().feature_kinds(OUTPUTS)
    with pytest.raises(ValueError, match="must have dtype timestamp, int or float"):
        SequenceFeaturesConfig(time="merchant_category", features=["amount"]).feature_kinds(OUTPUTS)


def _random_transactions(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    # coarse times and few cards force many ties and long histories
    return [tx(f"t{i:04d}", rng.randrange(0, 60) * 30, round(rng.uniform(1, 500), 2), card=f"card{rng.randrange(8)}",
               category=rng.choice(["grocery", "travel", "restaurant"])) for i in range(n)]


def test_beam_histories_hold_exactly_the_last_n_strictly_earlier_transactions_of_the_card() -> None:
    rows = _random_transactions(seed=7, n=400)
    rows.append(tx("no-card", 100, card=None))
    by_id = {r["transaction_id"]: r for r in rows}
    config = SequenceFeaturesConfig(length=5, features=["amount", "transaction_id"])
    kinds = config.feature_kinds(OUTPUTS)

    def check(outputs: list[dict]) -> None:
        assert sorted(o["transaction_id"] for o in outputs) == sorted(by_id)
        for out in outputs:
            me = by_id[out["transaction_id"]]
            ids = [i for i, m in zip(out["history_transaction_id"], out["history_mask"], strict=True) if m]
            for tid in ids:
                earlier = by_id[tid]
                assert earlier["card_id"] == me["card_id"] is not None
                assert earlier["timestamp"] < me["timestamp"], "a history entry is not strictly earlier"
            expected = sorted((r for r in rows if r["card_id"] is not None and r["card_id"] == me["card_id"]
                               and r["timestamp"] < me["timestamp"]),
                              key=lambda r: (r["timestamp"], r["transaction_id"]), reverse=True)[:5]
            assert ids == [r["transaction_id"] for r in expected]
            assert out["history_amount"][: len(ids)] == [by_id[t]["amount"] for t in ids]
            assert out["history_seconds_since"][: len(ids)] == [me["timestamp"] - by_id[t]["timestamp"] for t in ids]
            assert len(out["history_amount"]) == len(out["history_mask"]) == 5

    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        outputs = (
            pipeline
            | beam.Create([(True, r) for r in rows])
            | AddCardHistory(config, kinds)
        )
        assert_that(outputs, check)


def test_beam_context_rows_are_dropped_from_the_output() -> None:
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        outputs = (
            pipeline
            | beam.Create([(True, tx("today", 1000)), (False, tx("yesterday", 10)),
                           (False, tx("other", 20, card=None))])
            | AddCardHistory(CONFIG, KINDS)
            | beam.Map(lambda o: (o["transaction_id"], o["history_transaction_id"]))
        )
        assert_that(outputs, equal_to([("today", ["yesterday", "", ""])]))
