"""The Beam ingestion: anonymizes while reading, k-anonymity by config, no key in the pipeline graph."""
from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import apache_beam as beam
import pytest
import yaml
from apache_beam.testing.util import assert_that

from components.anonymizing_example_gen.ingest import AnonymizedRows, IngestPlan, ReadAnonymizedRows
from components.anonymizing_example_gen.sequence_features import SequenceFeaturesConfig
from pipeline.datasets.fraud_simulator import COLUMNS, PII_COLUMNS, SimulationConfig, simulate
from privacy.errors import InvalidValueError
from privacy.policy import PrivacyPolicy

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "fraud_privacy_example.yaml"
SECRET = "test-key-" + "x" * 40


@pytest.fixture(scope="module")
def span_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    simulate(SimulationConfig(transactions=1500, days=1, seed=2, customers=60), out)
    return out / "span-0001" / "transactions.csv"


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESTEIRA_PSEUDONYM_KEY", SECRET)


def example_sections() -> dict:
    return yaml.safe_load(EXAMPLE_CONFIG.read_text())


def policy(**k_anonymity: object) -> PrivacyPolicy:
    section = example_sections()["privacy"]
    if k_anonymity:
        section["k_anonymity"] = {**section["k_anonymity"], **k_anonymity}
    return PrivacyPolicy.model_validate(section)


def raw_pii(path: Path) -> set[str]:
    with path.open(newline="", encoding="utf-8") as stream:
        return {row[c] for row in csv.DictReader(stream) for c in PII_COLUMNS if c != "birth_date"}


def run(plan: IngestPlan, check) -> None:
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        assert_that(pipeline | AnonymizedRows(plan), check)


def test_example_policy_covers_every_simulator_column() -> None:
    sections = example_sections()
    parsed = PrivacyPolicy.model_validate(sections["privacy"])
    parsed.check_header(COLUMNS)
    config = SequenceFeaturesConfig.model_validate(sections["sequence_features"])
    assert "history_amount" in config.feature_kinds(parsed.output_columns())


def test_rows_come_out_anonymized(span_file: Path) -> None:
    p = policy(k=2, count_distinct=None)
    pii = raw_pii(span_file)

    def check(rows: list[dict]) -> None:
        assert len(rows) > 1000
        assert set(rows[0]) == set(p.output_columns())
        values = {v for row in rows for v in row.values() if isinstance(v, str)}
        assert not values & pii
        assert all(len(row["card_id"]) == 64 for row in rows)
        assert {row["age_band"] for row in rows} <= {"<18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"}

    run(IngestPlan(p.canonical_json(), [str(span_file)]), check)


def test_suppress_mode_drops_small_groups_and_reports_them(span_file: Path, tmp_path: Path) -> None:
    p = policy(k=4, on_violation="suppress", count_distinct="card_id")
    report = tmp_path / "report.json"

    def check(rows: list[dict]) -> None:
        cards: dict[tuple, set] = {}
        for row in rows:
            cards.setdefault((row["age_band"], row["cep_region"]), set()).add(row["card_id"])
        assert cards and min(len(c) for c in cards.values()) >= 4

    run(IngestPlan(p.canonical_json(), [str(span_file)], k_anonymity_report_path=str(report)), check)
    summary = json.loads(report.read_text())
    assert summary["k"] == 4 and summary["violations"]  # 60 customers spread thin: some groups are small
    assert all(n < 4 for _, n in summary["violations"])


def test_fail_mode_lets_no_row_through_when_a_group_is_small(span_file: Path, tmp_path: Path) -> None:
    p = policy(k=4, on_violation="fail", count_distinct="card_id")
    report = tmp_path / "report.json"

    def check(rows: list[dict]) -> None:
        assert rows == []

    run(IngestPlan(p.canonical_json(), [str(span_file)], k_anonymity_report_path=str(report)), check)
    assert json.loads(report.read_text())["violations"]


def test_histories_are_built_after_anonymization(span_file: Path) -> None:
    p = policy(k=2, count_distinct=None)
    config = SequenceFeaturesConfig(length=4)

    def check(rows: list[dict]) -> None:
        assert any(row["history_count"] == 4 for row in rows)
        assert all(len(row["history_amount"]) == 4 for row in rows)

    run(IngestPlan(p.canonical_json(), [str(span_file)], sequence=config), check)


def test_the_reader_as_shipped_to_workers_carries_no_key() -> None:
    shipped = pickle.dumps(ReadAnonymizedRows(policy().canonical_json()))
    assert SECRET.encode() not in shipped
    assert b"ESTEIRA_PSEUDONYM_KEY" in shipped  # only the name of where to find it


def test_reader_accepts_a_byte_order_mark_and_counts_lines_for_errors(span_file: Path, tmp_path: Path) -> None:
    lines = span_file.read_text(encoding="utf-8").splitlines(keepends=True)
    bad = lines[3].split(",")
    bad[7] = "15/05/1969"  # birth_date in the wrong format
    path = tmp_path / "export.csv"
    path.write_text("\ufeff" + "".join(lines[:3]) + ",".join(bad), encoding="utf-8")
    reader = ReadAnonymizedRows(policy().canonical_json())
    reader.setup()
    rows = reader.process((str(path), True))
    assert next(rows)[1]["age_band"] and next(rows)[0] is True
    with pytest.raises(InvalidValueError, match=r"export.csv, line 4, column 'birth_date'") as caught:
        next(rows)
    assert "15/05/1969" not in str(caught.value)
