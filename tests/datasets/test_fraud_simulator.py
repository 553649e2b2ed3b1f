"""The transaction simulator: deterministic, the configured fraud rate, valid personal data, span layout."""
from __future__ import annotations

import csv
import hashlib
import json
import re
import tracemalloc
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from pipeline.datasets.fraud_simulator import (
    COLUMNS,
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


def test_default_fraud_rate_is_about_one_and_a_half_percent(simulated: tuple[Path, list]) -> None:
    _, rows = simulated
    rate = sum(r["is_fraud"] == "1" for r in rows) / len(rows)
    assert 0.012 <= rate <= 0.018, rate


@pytest.mark.parametrize("fraud_rate", [0.0, 0.05])
def test_configured_fraud_rate_is_met(tmp_path: Path, fraud_rate: float) -> None:
    simulate(SimulationConfig(transactions=8000, days=2, seed=5, fraud_rate=fraud_rate), tmp_path)
    rows = _read(tmp_path)
    assert len(rows) == 8000
    rate = sum(r["is_fraud"] == "1" for r in rows) / len(rows)
    assert abs(rate - fraud_rate) <= 0.006, rate


def test_all_fraud_scenarios_occur_and_look_like_themselves(simulated: tuple[Path, list]) -> None:
    _, rows = simulated
    fraud = [r for r in rows if r["is_fraud"] == "1"]
    assert {r["fraud_scenario"] for r in fraud} == {"card_testing", "account_takeover", "compromised_merchant"}
    assert all(r["fraud_scenario"] == "" for r in rows if r["is_fraud"] == "0")
    testing = [float(r["amount"]) for r in fraud if r["fraud_scenario"] == "card_testing"]
    assert sum(a <= 5.0 for a in testing) / len(testing) > 0.7  # bursts of tiny amounts
    takeover = [float(r["amount"]) for r in fraud if r["fraud_scenario"] == "account_takeover"]
    legit = sorted(float(r["amount"]) for r in rows if r["is_fraud"] == "0")
    assert sorted(takeover)[len(takeover) // 2] > 5 * legit[len(legit) // 2]  # high amounts
    usual_device = {r["card_number"]: r["device_id"] for r in rows if r["is_fraud"] == "0" and r["device_id"]}
    assert all(r["device_id"] != usual_device.get(r["card_number"]) for r in fraud
               if r["fraud_scenario"] == "account_takeover")  # a new device
    cloned = [float(r["distance_from_home_km"]) for r in fraud if r["fraud_scenario"] == "compromised_merchant"]
    assert min(cloned) > 100  # spent in another city


def test_personal_data_is_well_formed(simulated: tuple[Path, list]) -> None:
    _, rows = simulated
    assert all(is_valid_cpf(r["cpf"]) and re.fullmatch(r"\d{3}\.\d{3}\.\d{3}-\d{2}", r["cpf"]) for r in rows)
    assert all(is_valid_luhn(r["card_number"]) and len(r["card_number"]) == 16 for r in rows)
    assert all(re.fullmatch(r"\d{5}-\d{3}", r["customer_cep"]) for r in rows)
    assert all(re.fullmatch(r"\+55 \d{2} 9\d{4}-\d{4}", r["phone"]) for r in rows)
    assert all(re.fullmatch(r"[a-z]+\.[a-z]+\d+@[a-z.]+", r["email"]) for r in rows)
    assert all(len(r["customer_name"].split()) == 3 for r in rows)
    ages = [(date(2024, 1, 1) - date.fromisoformat(r["birth_date"])).days / 365.25 for r in rows]
    assert 18 <= min(ages) and max(ages) <= 93


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
