"""The handbook profile: the book's rules hold in the written data, its size and fraud rate, the layout,
determinism, valid personal data, and one-line errors for bad flags."""
from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets.fraud_profiles import fraud_main
from pipeline.datasets.fraud_simulator import is_valid_cpf, is_valid_luhn
from pipeline.datasets.handbook_simulator import (
    COLUMNS,
    CUSTOMER_COMPROMISE_DAYS,
    DAY_SECONDS,
    PII_COLUMNS,
    TERMINAL_COMPROMISE_DAYS,
    HandbookConfig,
    build_profiles,
    compromised_customers,
    compromised_terminals,
    draw_day,
    personal_data,
    personal_values,
    simulate,
)

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--customers", "300", "--terminals", "600", "--days", "45", "--seed", "5"]


def _read(out: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted(out.glob("span-*/transactions.csv")):
        with path.open(newline="", encoding="utf-8") as stream:
            rows.extend({**row, "_day": int(path.parent.name[5:]) - 1} for row in csv.DictReader(stream))
    return rows


def _digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*.csv"))}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HandbookConfig, list[dict[str, str]]]:
    out = tmp_path_factory.mktemp("handbook")
    assert fraud_main(["--profile", "handbook", *SMALL, "--out", str(out), "--no-progress"]) == 0
    return out, HandbookConfig(customers=300, terminals=600, days=45, seed=5), _read(out)


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    args = ["--profile", "handbook", "--customers", "80", "--terminals", "150", "--days", "20", "--no-progress"]
    for name, seed in [("a", "4"), ("b", "4"), ("c", "9")]:
        assert fraud_main([*args, "--seed", seed, "--out", str(tmp_path / name)]) == 0
    a, b, c = (_digests(tmp_path / name) for name in "abc")
    assert a == b and len(a) == 20
    assert set(c) == set(a) and all(a[k] != c[k] for k in a)
    manifests = [json.loads((tmp_path / name / "manifest.json").read_text()) for name in "ab"]
    for manifest in manifests:
        assert manifest.pop("generation_seconds") >= 0
    assert manifests[0] == manifests[1]


def test_layout_columns_ids_and_timestamps(small) -> None:
    out, _config, rows = small
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"] + [f"span-{i:04d}" for i in range(1, 46)]
    for span in out.glob("span-*"):
        assert [p.name for p in span.iterdir()] == ["transactions.csv"]
        with (span / "transactions.csv").open(newline="") as stream:
            assert next(csv.reader(stream)) == COLUMNS
    ids = [int(r["transaction_id"]) for r in rows]
    assert ids == list(range(len(rows)))  # global, increasing, no gaps
    times = np.array([int(r["timestamp"]) for r in rows])
    assert np.all(np.diff(times) >= 0)  # id order is time order
    origin = 1522540800  # 2018-04-01T00:00:00Z
    days = np.array([r["_day"] for r in rows])
    assert np.array_equal((times - origin) // DAY_SECONDS, days)  # each row in its day's span
    seconds = (times - origin) % DAY_SECONDS
    assert seconds.min() > 0 and seconds.max() < DAY_SECONDS
    assert all(r["amount"] == f"{float(r['amount']):.2f}" for r in rows)
    assert {r["is_fraud"] for r in rows} == {"0", "1"}
    assert all((r["is_fraud"] == "1") == (r["fraud_scenario"] != "0") for r in rows)
    assert {r["fraud_scenario"] for r in rows} == {"0", "1", "2", "3"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["transactions"] == len(rows)
    assert [s["rows"] for s in manifest["spans"]] == [int((days == d).sum()) for d in range(45)]
    frauds = defaultdict(int)
    for r in rows:
        frauds[r["fraud_scenario"]] += 1
    assert manifest["fraud_by_scenario"] == {"amount_over_220": frauds["1"], "compromised_terminal": frauds["2"],
                                             "compromised_customer": frauds["3"]}
    text = json.dumps(manifest)
    assert not any(rows[0][column] in text for column in PII_COLUMNS)  # no personal data in the manifest


def test_draws_follow_the_book(small) -> None:
    """Amounts of the legitimate draw: N(mean, mean/2), negatives replaced (never below 0); terminals in reach."""
    _out, config, _rows = small
    profiles = build_profiles(config)
    day = draw_day(config, profiles, 3)
    assert day.amount.min() >= 0
    for c in np.unique(day.customer)[:50]:
        reach = profiles.terminal_index[profiles.terminal_offsets[c]:profiles.terminal_offsets[c + 1]]
        assert set(day.terminal[day.customer == c]) <= set(reach)
    assert profiles.mean_amount.min() > 0 and profiles.mean_amount.max() < 100
    assert np.allclose(profiles.std_amount, profiles.mean_amount / 2)


def test_scenario_rules_hold_in_the_output(small) -> None:
    _out, config, rows = small
    people = personal_data(config)
    customer_of_card = {person[PII_COLUMNS.index("card_number")]: c for c, person in enumerate(people)}
    assert len(customer_of_card) == config.customers  # one distinct card per customer
    profiles = build_profiles(config)
    by_day: dict[int, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_day[r["_day"]].append(r)

    # 1: every amount over 220 is fraud (the drawn amount; scenario 3 may raise amounts later)
    for d in range(config.days):
        drawn = draw_day(config, profiles, d)
        written = by_day[d]
        assert len(written) == len(drawn)
        for r, amount in zip(written, drawn.amount.tolist(), strict=True):
            if amount > 220:
                assert r["is_fraud"] == "1"

    # 2: a terminal compromised on day d makes every transaction on d..d+27 fraud, and only those are scenario 2
    until: dict[int, int] = {}
    for d in range(config.days):
        for t in compromised_terminals(config, d).tolist():
            until[t] = max(until.get(t, -1), d + TERMINAL_COMPROMISE_DAYS - 1)
        compromised_now = {t for t, last in until.items() if last >= d}
        for r in by_day[d]:
            if int(r["terminal_id"]) in compromised_now:
                assert r["is_fraud"] == "1" and r["fraud_scenario"] in {"2", "3"}
            else:
                assert r["fraud_scenario"] != "2"
    assert sum(r["fraud_scenario"] == "2" for r in rows) > 0

    # 3: a compromised customer gets int(n/3) of the n transactions in the 14-day block as fraud, amount x5
    starts: dict[int, list[int]] = defaultdict(list)
    for d in range(config.days):
        for c in compromised_customers(config, d).tolist():
            starts[c].append(d)
    checked = 0
    for c, days in starts.items():
        for start in days:
            block = range(start, start + CUSTOMER_COMPROMISE_DAYS)
            if any(other != start and abs(other - start) < CUSTOMER_COMPROMISE_DAYS for other in days):
                continue  # overlapping blocks of one customer compound, as in the book
            mine = [r for d in block for r in by_day.get(d, []) if customer_of_card[r["card_number"]] == c]
            assert sum(r["fraud_scenario"] == "3" for r in mine) == len(mine) // 3
            checked += 1
    assert checked > 20
    for d in range(config.days):  # scenario 3 multiplies the drawn amount by 5 (by 5 again per overlapping block)
        drawn = draw_day(config, profiles, d)
        for r, amount in zip(by_day[d], drawn.amount.tolist(), strict=True):
            if r["fraud_scenario"] == "3":
                ratio = float(r["amount"]) / amount if amount else 5.0
                assert any(abs(ratio - 5 ** k) * amount <= 0.01 * 5 ** k for k in (1, 2, 3)), (r, amount)
            else:
                assert r["amount"] == f"{amount:.2f}"
    recent = {(c, d) for c, days in starts.items() for s in days for d in range(s, s + CUSTOMER_COMPROMISE_DAYS)}
    assert all((customer_of_card[r["card_number"]], r["_day"]) in recent for r in rows if r["fraud_scenario"] == "3")


def test_book_size_per_day_and_fraud_rate(tmp_path: Path) -> None:
    """At the book's customers and terminals: ~9,700 transactions a day and, once every scenario runs at full
    strength (days 27-42), ~0.9 % fraud, as the book's ~10,000 transactions and ~85 frauds a day."""
    config = HandbookConfig(customers=5_000, terminals=10_000, days=56, seed=2)
    summaries = simulate(config, tmp_path, progress=False)
    per_day = np.array([s.rows for s in summaries])
    assert 9_300 <= per_day.mean() <= 10_100, per_day.mean()
    steady = summaries[TERMINAL_COMPROMISE_DAYS - 1:config.days - CUSTOMER_COMPROMISE_DAYS + 1]
    rate = sum(s.fraud_rows for s in steady) / sum(s.rows for s in steady)
    assert 0.0072 <= rate <= 0.0108, rate  # seeds 0-7 and 13: 0.84-0.97 %, sd ~0.04 %
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["generation_seconds"] > 0
    assert 60 <= manifest["mean_terminals_per_customer"] <= 80  # pi * 5^2 = 78.5 terminals, fewer at the edges


def test_personal_data_is_valid_fixed_per_customer_and_found_by_the_leak_scan(small) -> None:
    out, config, rows = small
    people = personal_data(config)
    assert all(is_valid_cpf(p[1]) for p in people) and len({p[1] for p in people}) == len(people)
    assert all(is_valid_luhn(p[4]) and len(p[4]) == 16 for p in people)
    for p in people:
        born = date.fromisoformat(p[5])
        assert 17 <= (config.start_date - born).days / 365.25 <= 86
        assert len(p[6]) == 9 and p[6][5] == "-"
    by_card: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for r in rows:
        by_card[r["card_number"]].add(tuple(r[column] for column in PII_COLUMNS))
    assert all(len(records) == 1 for records in by_card.values())
    needles = personal_values(out)
    written = {r[column] for r in rows for column in PII_COLUMNS}
    assert written <= needles
    assert rows[0]["cpf"].replace(".", "").replace("-", "") in needles


def _exit_code(argv: list[str]) -> int:
    try:
        return fraud_main(argv)
    except SystemExit as done:  # argparse's own errors (a flag that is not a number)
        return int(done.code)


@pytest.mark.parametrize(("flags", "named"), [
    (["--days", "0"], "--days"),
    (["--customers", "0"], "--customers"),
    (["--terminals", "-3"], "--terminals"),
    (["--radius", "0"], "--radius"),
    (["--radius", "-1.5"], "--radius"),
    (["--days", "many"], "--days"),
])
def test_bad_flags_are_one_line_naming_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                flags: list[str], named: str) -> None:
    assert _exit_code(["--profile", "handbook", "--out", str(tmp_path / "out"), *flags]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_the_esteira_command_dispatches_the_profile_and_its_errors(tmp_path: Path) -> None:
    def esteira(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli", "data", "fraud", *flags],
                              capture_output=True, text=True, cwd=REPO, timeout=120)

    bad = esteira("--profile", "handbook", "--out", str(tmp_path / "bad"), "--days", "0")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--days" in bad.stderr
    good = esteira("--profile=handbook", "--customers", "30", "--terminals", "60", "--days", "2",
                   "--out", str(tmp_path / "good"))
    assert good.returncode == 0, good.stderr
    assert "wrote" in good.stdout and (tmp_path / "good" / "span-0002" / "transactions.csv").is_file()


def test_unknown_profile_is_one_line_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert fraud_main(["--profile", "book", "--out", "x"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--profile 'book'" in error[0] and "handbook" in error[0] and "esteira" in error[0]
    assert fraud_main(["--out", "x", "--profile"]) == 2


def test_existing_spans_are_kept_unless_overwrite(tmp_path: Path) -> None:
    args = ["--profile", "handbook", "--customers", "20", "--terminals", "40", "--days", "3", "--no-progress",
            "--out", str(tmp_path)]
    assert fraud_main(args) == 0
    assert fraud_main(args) == 2
    assert fraud_main([*args, "--overwrite", "--days", "2"]) == 0
    assert sorted(p.name for p in tmp_path.glob("span-*")) == ["span-0001", "span-0002"]


def test_default_profile_is_still_the_esteira_simulator(tmp_path: Path) -> None:
    assert fraud_main(["--transactions", "500", "--days", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    with (tmp_path / "span-0001" / "transactions.csv").open(newline="") as stream:
        assert "merchant_id" in next(csv.reader(stream))
