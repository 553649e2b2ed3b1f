"""The handbook use case out of time, end to end on tiny data: `esteira data fraud --profile handbook`,
then `esteira run` with the time split (train 7 days, delay 7, eval 7) and the book's window features.

Checks what the run recorded and emitted against the raw files: the windows' days and counts, the
delay skipped, the known-compromised cards removed from evaluation, and window features that are
present and equal to a brute-force recount over strictly earlier (terminal: delayed) raw rows.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from evidence import lineage
from models.fraud.window_features import WINDOW_FEATURE_NAMES
from pipeline.config import load_config
from pipeline.report import load_report

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
KEY = "e2e-time-split-key-" + "k" * 45
DAY = 86_400
ORIGIN = int(datetime(2018, 4, 1, tzinfo=UTC).timestamp())  # span 1, day 0
MODEL_WINDOW_FEATURES = {"customer_nb_tx_1d": "float", "customer_avg_amount_7d": "float",
                         "terminal_risk_7d": "float", "terminal_risk_30d": "float", "during_night": "int"}


def esteira(root: Path, env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    """45 days of 200 customers and 400 terminals; one pipeline run with a 7/7/7 split ending on span 45."""
    root = tmp_path_factory.mktemp("fraud_time_split")
    env = dict(os.environ, ESTEIRA_PSEUDONYM_KEY=KEY)
    data = esteira(root, env, "data", "fraud", "--profile", "handbook", "--customers", "200", "--terminals", "400",
                   "--days", "45", "--seed", "3", "--out", "data/fraud_handbook", "--no-progress")
    assert data.returncode == 0, data.stderr[-2000:]
    doc = yaml.safe_load((REPO / "configs" / "fraud_handbook.yaml").read_text())
    assert doc["data"]["split"]["kind"] == "time"
    doc["data"]["split"].update(train_days=7, delay_days=7, eval_days=7, end_span=None)
    doc["data"]["features"].update(MODEL_WINDOW_FEATURES)
    doc["training"].update(train_steps=40, eval_steps=3, epochs=1)
    # 200 customers: about a hundred cards a day, so the per-day metrics look at the top 10
    doc["evaluation"].update(card_key="card_id", time_key="timestamp", card_precision_k=10, alerts_per_day=[20])
    # 200 customers make k-anonymity groups of two or three: suppression would make the raw recount
    # below differ from what was read (k-anonymity has its own tests and the fraud e2e test)
    doc["privacy"]["k_anonymity"] = None
    doc["governance"]["access_audit_logs"] = []
    config_path = root / "fraud_handbook.yaml"
    config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = esteira(root, env, "run", "--config", str(config_path))
    assert result.returncode == 0, result.stderr[-4000:]
    config = load_config(config_path, base=root)
    return root, env, config_path, config, result.stdout


def raw_rows(folder: Path) -> dict[int, dict]:
    rows = {}
    for path in sorted(folder.glob("span-*/transactions.csv")):
        with path.open(newline="", encoding="utf-8") as stream:
            for row in csv.DictReader(stream):
                rows[int(row["transaction_id"])] = {
                    "timestamp": int(row["timestamp"]), "card": row["card_number"], "terminal": row["terminal_id"],
                    "amount": float(row["amount"]), "is_fraud": int(row["is_fraud"])}
    return rows


def emitted(uri: str, split: str) -> list[dict]:
    from tensorflow.core.example import example_pb2

    rows = []
    for path in sorted((Path(uri) / f"Split-{split}").glob("*.gz")):
        data = gzip.decompress(path.read_bytes())
        while data:  # TFRecord framing: length (8), crc (4), payload, crc (4)
            length = int.from_bytes(data[:8], "little")
            example = example_pb2.Example.FromString(data[12:12 + length])
            data = data[16 + length:]
            row = {}
            for name, feature in example.features.feature.items():
                kind = feature.WhichOneof("kind")
                values = list(getattr(feature, kind).value) if kind else []
                row[name] = values[0] if len(values) == 1 else values
            rows.append(row)
    return rows


@pytest.fixture(scope="module")
def examples(run):
    _root, _env, _path, config, _ = run
    store = lineage.open_store(config.pipeline.metadata_path)
    executions = lineage.run_executions(store, lineage.latest_run_id(store, config.pipeline.name))
    example_gen = next(e for e in executions if e.node == "AnonymizingExampleGen")
    artifact = lineage.output_artifacts(store, example_gen.execution_id, "examples")[0]
    props = {name: getattr(value, value.WhichOneof("value")) for name, value in artifact.custom_properties.items()}
    return props, emitted(artifact.uri, "train"), emitted(artifact.uri, "eval")


def day(timestamp: int) -> int:
    return (timestamp - ORIGIN) // DAY


def test_the_run_trains_and_evaluates_out_of_time(run) -> None:
    root, env, config_path, _config, stdout = run
    assert "time split (out of time):" in stdout
    report = esteira(root, env, "report", "--config", str(config_path), timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "  train 2018-04-25 .. 2018-05-01 (spans 25-31): " in report.stdout
    assert "  delay 2018-05-02 .. 2018-05-08 (spans 32-38): skipped" in report.stdout
    assert "  eval  2018-05-09 .. 2018-05-15 (spans 39-45): " in report.stdout
    assert "FAILED" not in report.stdout


def test_windows_hold_their_days_and_counts(run, examples) -> None:
    root, *_ = run
    props, train, evaluation = examples
    manifest = json.loads((root / "data" / "fraud_handbook" / "manifest.json").read_text())
    spans = {s["span"]: s for s in manifest["spans"]}
    assert {day(r["timestamp"]) for r in train} == set(range(24, 31))  # spans 25-31
    assert {day(r["timestamp"]) for r in evaluation} == set(range(38, 45))  # spans 39-45; 32-38 skipped
    assert props["train_rows"] == len(train) == sum(spans[s]["rows"] for s in range(25, 32))
    train_frauds = sum(spans[s]["fraud_rows"] for s in range(25, 32))
    assert props["train_frauds"] == sum(r["is_fraud"] for r in train) == train_frauds
    assert props["eval_rows"] == len(evaluation) and props["eval_frauds"] == sum(r["is_fraud"] for r in evaluation)
    assert props["eval_rows"] + props["eval_known_compromised_rows"] == sum(spans[s]["rows"] for s in range(39, 46))
    assert (props["history_first_span"], props["history_last_span"]) == (1, 24)


def test_cards_already_known_compromised_are_not_evaluated(run, examples) -> None:
    root, *_ = run
    props, train, evaluation = examples
    raw = raw_rows(root / "data" / "fraud_handbook")
    by_id = {**{r["transaction_id"]: r for r in train}, **{r["transaction_id"]: r for r in evaluation}}
    card = {tid: raw[tid]["card"] for tid in by_id}
    # the book's rule from the raw labels: a fraud in train, or on a day <= eval day - 7 - 1 (from train start)
    first_fraud: dict[str, int] = {}
    for row in raw.values():
        if row["is_fraud"] and day(row["timestamp"]) >= 24:
            first_fraud[row["card"]] = min(first_fraud.get(row["card"], 10**9), day(row["timestamp"]))
    expected_removed = [tid for tid, row in raw.items() if 38 <= day(row["timestamp"]) <= 44
                        and first_fraud.get(row["card"], 10**9) <= day(row["timestamp"]) - 8]
    assert props["eval_known_compromised_rows"] == len(expected_removed) > 0
    kept = {r["transaction_id"] for r in evaluation}
    assert not kept & set(expected_removed)
    train_fraud_cards = {card[r["transaction_id"]] for r in train if r["is_fraud"]}
    assert train_fraud_cards and not train_fraud_cards & {card[tid] for tid in kept}


def test_window_features_are_present_and_causal(run, examples) -> None:
    root, *_ = run
    _props, train, evaluation = examples
    raw = raw_rows(root / "data" / "fraud_handbook")
    by_terminal, by_card = defaultdict(list), defaultdict(list)
    for tid, row in raw.items():
        by_terminal[row["terminal"]].append((row["timestamp"], row["is_fraud"]))
        by_card[row["card"]].append((row["timestamp"], tid, row["amount"]))
    rows = train[::7] + evaluation[::3]
    assert len(rows) > 100
    for row in rows:
        assert set(WINDOW_FEATURE_NAMES) <= set(row)
        t, source = row["timestamp"], raw[row["transaction_id"]]
        for n in (1, 7, 30):  # terminal: (t - 7 - n days, t - 7], labels only once known
            window = [y for s, y in by_terminal[source["terminal"]] if t - (7 + n) * DAY < s <= t - 7 * DAY]
            assert row[f"terminal_nb_tx_{n}d"] == len(window)
            assert row[f"terminal_risk_{n}d"] == pytest.approx(sum(window) / len(window) if window else 0.0)
            mine = [a for s, tid, a in by_card[source["card"]]  # customer: (t - n days, t], itself included
                    if t - n * DAY < s and (s, tid) <= (t, row["transaction_id"])]
            assert row[f"customer_nb_tx_{n}d"] == len(mine)
            assert row[f"customer_avg_amount_{n}d"] == pytest.approx(sum(mine) / len(mine), rel=1e-5)
        assert row["during_night"] == int((t % DAY) // 3600 <= 6)
        history = [s for s, tid, _ in by_card[source["card"]] if s < t]
        assert row["history_count"] == min(len(history), 10)  # the card history: strictly earlier rows


def test_the_fraud_metrics_reach_the_evaluation_of_the_eval_window(run, examples) -> None:
    _root, _env, _path, config, _ = run
    props, _train, _evaluation = examples
    report = load_report(config.pipeline.metadata_path, config.pipeline.name)
    assert int(report.metrics["example_count"]) == props["eval_rows"]  # the Evaluator saw the eval window
    for name in ("average_precision", "card_precision_at_10", "recall_at_20_alerts_per_day"):
        assert 0.0 <= report.metrics[name] <= 1.0, name
