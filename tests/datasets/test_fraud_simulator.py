"""The transaction simulator: deterministic, a realistic fraud rate, fraud that overlaps legitimate
behaviour, late labels, drift between spans, valid personal data, span layout."""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import re
import statistics
import tracemalloc
from collections import Counter, defaultdict
from datetime import date, datetime
from pathlib import Path

import pytest

from pipeline.datasets.fraud_simulator import (
    COLUMNS,
    LABEL_DELAY_MAX_DAYS,
    SimulationConfig,
    fraud_main,
    is_valid_cpf,
    is_valid_luhn,
    luhn_check_digit,
    simulate,
)


def _read(out: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted(out.glob("span-*/transactions.csv")):
        with path.open(newline="", encoding="utf-8") as stream:
            rows.extend({**row, "_span": path.parent.name} for row in csv.DictReader(stream))
    return rows


def _digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    out = tmp_path_factory.mktemp("sim")
    assert fraud_main(["--transactions", "20000", "--days", "4", "--seed", "3", "--out", str(out)]) == 0
    return out, _read(out)


@pytest.fixture(scope="module")
def fraud_rich(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    """Many frauds (5 %), so that each scenario's share of a property is measured on enough rows."""
    out = tmp_path_factory.mktemp("rich")
    simulate(SimulationConfig(transactions=30000, days=3, seed=21, fraud_rate=0.05), out)
    return _read(out)


def _usual_devices(rows: list[dict[str, str]]) -> dict[str, str]:
    """Each card's most used device in its legitimate online purchases."""
    seen: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        if r["is_fraud"] == "0" and r["device_id"]:
            seen[r["card_number"]][r["device_id"]] += 1
    return {card: counts.most_common(1)[0][0] for card, counts in seen.items()}


def _share(flags: list[bool]) -> float:
    assert flags, "no rows to measure"
    return sum(flags) / len(flags)


def test_same_seed_same_files_and_other_seed_other_files(tmp_path: Path) -> None:
    args = ["--transactions", "3000", "--days", "2", "--out"]
    assert fraud_main([*args, str(tmp_path / "a"), "--seed", "11"]) == 0
    assert fraud_main([*args, str(tmp_path / "b"), "--seed", "11"]) == 0
    assert fraud_main([*args, str(tmp_path / "c"), "--seed", "12"]) == 0
    a, b, c = (_digests(tmp_path / name) for name in "abc")
    assert a == b
    assert set(a) == set(c) and a["span-0001/transactions.csv"] != c["span-0001/transactions.csv"]


def test_layout_is_one_folder_per_day_with_the_full_header(simulated: tuple[Path, list]) -> None:
    out, rows = simulated
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "span-0001", "span-0002", "span-0003",
                                                     "span-0004"]
    for span in out.glob("span-*"):
        assert [p.name for p in span.iterdir()] == ["transactions.csv"]
        with (span / "transactions.csv").open(newline="") as stream:
            assert next(csv.reader(stream)) == COLUMNS
    assert len(rows) == 20000
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input_pattern"] == "span-{SPAN:4}/*.csv"
    assert [s["rows"] for s in manifest["spans"]] == [sum(r["_span"] == f"span-{i:04d}" for r in rows)
                                                      for i in range(1, 5)]


def test_default_fraud_rate_is_as_rare_as_card_fraud(simulated: tuple[Path, list]) -> None:
    _, rows = simulated
    rate = sum(r["is_fraud"] == "1" for r in rows) / len(rows)
    assert 0.002 <= rate <= 0.005, rate


@pytest.mark.parametrize("fraud_rate", [0.0, 0.05])
def test_configured_fraud_rate_is_met(tmp_path: Path, fraud_rate: float) -> None:
    simulate(SimulationConfig(transactions=8000, days=2, seed=5, fraud_rate=fraud_rate), tmp_path)
    rows = _read(tmp_path)
    assert len(rows) == 8000
    rate = sum(r["is_fraud"] == "1" for r in rows) / len(rows)
    assert abs(rate - fraud_rate) <= 0.006, rate


def test_all_fraud_scenarios_occur_and_look_like_themselves(fraud_rich: list[dict[str, str]]) -> None:
    rows = fraud_rich
    fraud = [r for r in rows if r["is_fraud"] == "1"]
    by_scenario = defaultdict(list)
    for r in fraud:
        by_scenario[r["fraud_scenario"]].append(r)
    assert set(by_scenario) == {"card_testing", "account_takeover", "compromised_merchant", "friendly_fraud"}
    assert all(r["fraud_scenario"] == "" for r in rows if r["is_fraud"] == "0")
    usual = _usual_devices(rows)
    legit_devices = {(r["card_number"], r["device_id"]) for r in rows if r["is_fraud"] == "0" and r["device_id"]}

    testing = by_scenario["card_testing"]
    assert all(r["channel"] == "online" for r in testing)
    assert _share([float(r["amount"]) <= 30.0 for r in testing]) > 0.6  # probes, then maybe a cash-in
    assert not any((r["card_number"], r["device_id"]) in legit_devices for r in testing)  # a new device
    takeover = by_scenario["account_takeover"]
    assert all(r["channel"] == "online" for r in takeover)
    legit_online = sorted(float(r["amount"]) for r in rows if r["is_fraud"] == "0" and r["channel"] == "online")
    assert statistics.median(float(r["amount"]) for r in takeover) > 1.5 * statistics.median(legit_online)
    own_phone = _share([r["device_id"] == usual.get(r["card_number"]) for r in takeover])
    assert 0.05 < own_phone < 0.4  # a remote-access trojan on the victim's phone, else a new device
    cloned = by_scenario["compromised_merchant"]
    assert all(r["channel"] == "card_present" and r["device_id"] == "" for r in cloned)
    far = _share([float(r["distance_from_home_km"]) > 100 for r in cloned])
    assert 0.3 < far < 0.7  # spent in another city, or in the victim's own
    friendly = by_scenario["friendly_fraud"]
    assert max(float(r["distance_from_home_km"]) for r in friendly) < 100  # at home
    online = [r for r in friendly if r["channel"] == "online"]
    assert _share([r["device_id"] == usual.get(r["card_number"]) for r in online]) > 0.5  # the usual device


def test_legitimate_customers_travel_and_change_devices(simulated: tuple[Path, list]) -> None:
    _, rows = simulated
    legit = [r for r in rows if r["is_fraud"] == "0"]
    far = _share([float(r["distance_from_home_km"]) > 100 for r in legit])
    assert 0.02 < far < 0.12, far  # a trip now and then, every purchase of it far from home
    online = [r for r in legit if r["channel"] == "online"]
    far_online = _share([float(r["distance_from_home_km"]) > 100 for r in online])
    assert far_online > 0.01, far_online  # online while travelling too
    usual = _usual_devices(rows)
    other_device = _share([r["device_id"] != usual[r["card_number"]] for r in online])
    assert 0.04 < other_device < 0.3, other_device  # a second device, a new phone, a fresh browser
    travellers = {r["card_number"] for r in legit if float(r["distance_from_home_km"]) > 100}
    cards = {r["card_number"] for r in legit}
    assert 0.02 < len(travellers) / len(cards) < 0.5


def test_fraud_overlaps_legitimate_behaviour(fraud_rich: list[dict[str, str]]) -> None:
    rows = fraud_rich
    legit = [r for r in rows if r["is_fraud"] == "0"]
    fraud = [r for r in rows if r["is_fraud"] == "1"]
    assert _share([float(r["distance_from_home_km"]) < 50 for r in fraud]) > 0.4  # near home
    usual = _usual_devices(rows)
    fraud_online = [r for r in fraud if r["channel"] == "online"]
    assert _share([r["device_id"] == usual.get(r["card_number"]) for r in fraud_online]) > 0.1
    amounts = sorted(float(r["amount"]) for r in legit)
    low, high = amounts[len(amounts) // 20], amounts[-len(amounts) // 20]
    assert _share([low <= float(r["amount"]) <= high for r in fraud]) > 0.6  # within legit's 5-95 % range
    hours = Counter(int(r["timestamp"][11:13]) for r in fraud)
    assert sum(hours[h] for h in range(9, 22)) / len(fraud) > 0.5  # mostly by day, as customers shop


def test_each_fraud_gets_a_label_days_to_weeks_later(fraud_rich: list[dict[str, str]]) -> None:
    rows = fraud_rich
    assert "label_available_at" in COLUMNS
    assert all(r["label_available_at"] == "" for r in rows if r["is_fraud"] == "0")
    fraud = [r for r in rows if r["is_fraud"] == "1"]
    delays = sorted((datetime.fromisoformat(r["label_available_at"])
                     - datetime.fromisoformat(r["timestamp"])).total_seconds() / 86400 for r in fraud)
    assert delays[0] > 0 and delays[-1] <= LABEL_DELAY_MAX_DAYS + 1
    assert delays[len(delays) // 10] < 4 and delays[len(delays) // 2] > 5 and delays[-len(delays) // 10] > 20
    testing = [(datetime.fromisoformat(r["label_available_at"]) - datetime.fromisoformat(r["timestamp"]))
               .total_seconds() / 86400 for r in fraud if r["fraud_scenario"] == "card_testing"]
    friendly = [(datetime.fromisoformat(r["label_available_at"]) - datetime.fromisoformat(r["timestamp"]))
                .total_seconds() / 86400 for r in fraud if r["fraud_scenario"] == "friendly_fraud"]
    assert statistics.median(friendly) > 3 * statistics.median(testing)  # disputes come with the statement


def test_behaviour_drifts_from_the_first_spans_to_the_last(tmp_path: Path) -> None:
    simulate(SimulationConfig(transactions=80000, days=40, seed=4, fraud_rate=0.1, customers=1000), tmp_path)
    rows = _read(tmp_path)
    first = [r for r in rows if int(r["_span"][-4:]) <= 10]
    last = [r for r in rows if int(r["_span"][-4:]) > 30]

    def online(part: list[dict]) -> float:
        return _share([r["channel"] == "online" for r in part if r["is_fraud"] == "0"])

    def cloned(part: list[dict]) -> float:
        return _share([r["fraud_scenario"] == "compromised_merchant" for r in part if r["is_fraud"] == "1"])

    assert online(last) > online(first) + 0.02, (online(first), online(last))  # more spending online
    assert cloned(last) < cloned(first) - 0.08, (cloned(first), cloned(last))  # less card cloning
    spans = sorted({r["_span"] for r in rows})
    daily = [online([r for r in rows if r["_span"] == span]) for span in spans]
    assert max(abs(b - a) for a, b in itertools.pairwise(daily)) < 0.05  # gradual: one day resembles the next


def test_personal_data_is_well_formed(simulated: tuple[Path, list]) -> None:
    _, rows = simulated
    assert all(is_valid_cpf(r["cpf"]) and re.fullmatch(r"\d{3}\.\d{3}\.\d{3}-\d{2}", r["cpf"]) for r in rows)
    assert all(is_valid_luhn(r["card_number"]) and len(r["card_number"]) == 16 for r in rows)
    assert all(re.fullmatch(r"\d{5}-\d{3}", r["customer_cep"]) for r in rows)
    assert all(re.fullmatch(r"\+55 \d{2} 9\d{4}-\d{4}", r["phone"]) for r in rows)
    assert all(re.fullmatch(r"[a-z]+\.[a-z]+\d+@[a-z.]+", r["email"]) for r in rows)
    assert all(len(r["customer_name"].split()) == 3 for r in rows)
    ages = [(date(2024, 1, 1) - date.fromisoformat(r["birth_date"])).days / 365.25 for r in rows]
    assert min(ages) >= 18 and max(ages) <= 93


def test_check_digit_helpers_agree_with_known_numbers() -> None:
    assert is_valid_cpf("529.982.247-25") and not is_valid_cpf("529.982.247-26")
    assert not is_valid_cpf("111.111.111-11")
    assert luhn_check_digit("411111111111111") == 1 and is_valid_luhn("4111111111111111")
    assert not is_valid_luhn("4111111111111112")


def test_transactions_are_in_time_order_within_their_day(simulated: tuple[Path, list]) -> None:
    _, rows = simulated
    ids = [r["transaction_id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for span in {r["_span"] for r in rows}:
        stamps = [r["timestamp"] for r in rows if r["_span"] == span]
        assert stamps == sorted(stamps)
        day = date(2024, 1, 1).toordinal() + int(span[-4:]) - 1
        assert {date.fromisoformat(s[:10]).toordinal() for s in stamps} == {day}


def test_daily_cycle_has_more_traffic_at_noon_than_at_4am(simulated: tuple[Path, list]) -> None:
    _, rows = simulated
    hours = Counter(int(r["timestamp"][11:13]) for r in rows if r["is_fraud"] == "0")
    assert hours[12] > 10 * hours[4]


def test_customers_mostly_shop_near_home(simulated: tuple[Path, list]) -> None:
    _, rows = simulated
    distances = sorted(float(r["distance_from_home_km"]) for r in rows if r["is_fraud"] == "0")
    assert distances[len(distances) // 2] < 40 and distances[-1] > 500  # some travel too


def test_refuses_to_overwrite_spans_without_being_told(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--transactions", "500", "--days", "3", "--out", str(tmp_path)]
    assert fraud_main(args) == 0
    assert fraud_main(args) == 2
    assert "already holds simulated spans" in capsys.readouterr().err
    assert fraud_main(["--transactions", "500", "--days", "1", "--out", str(tmp_path), "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.glob("span-*")) == ["span-0001"]


def test_bad_arguments_are_explained(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert fraud_main(["--transactions", "10", "--days", "1", "--fraud-rate", "0.9", "--out", str(tmp_path)]) == 2
    assert "--fraud-rate must be between 0 and 0.5" in capsys.readouterr().err


def test_progress_bar_on_request(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert fraud_main(["--transactions", "300", "--days", "1", "--out", str(tmp_path), "--progress"]) == 0
    assert "300/300" in capsys.readouterr().err


def test_memory_does_not_grow_with_the_number_of_transactions(tmp_path: Path) -> None:
    def peak(transactions: int) -> int:
        config = SimulationConfig(transactions=transactions, days=1, seed=1, customers=200, max_chunk_rows=500)
        tracemalloc.start()
        simulate(config, tmp_path / str(transactions), progress=False, overwrite=True)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    peak(3000)  # warm-up: one-time allocations (imports, caches) are not the simulation's
    small, large = peak(3000), peak(24000)
    assert large < 1.5 * small, (small, large)
