"""The time split's columnar card pass writes the same examples as the row-at-a-time steps, edge cases included.

Both run in one Beam pipeline on the same raw files (handbook simulator, with cells blanked so that some
rows have no card, no terminal or no amount, and some rows repeat a card's second): AnonymizedRows, the
split by day and `to_example` on one side, TimeSplitExamples on the other. Equal examples per split carry
the row-at-a-time path's causality (its leak tests: test_window_features_ingest.py) over to the new one.
"""
from __future__ import annotations

import csv
from pathlib import Path

import apache_beam as beam
import pytest
import yaml
from tensorflow.core.example import example_pb2

from components.anonymizing_example_gen.card_examples import TimeSplitExamples
from components.anonymizing_example_gen.encoding import to_example
from components.anonymizing_example_gen.executor import _time_split_files, feature_kinds
from components.anonymizing_example_gen.ingest import AnonymizedRows, IngestPlan
from components.anonymizing_example_gen.sequence_features import SequenceFeaturesConfig
from components.anonymizing_example_gen.time_windows import TimeSplitSettings, split_by_window
from components.anonymizing_example_gen.window_features import WindowFeaturesConfig
from pipeline.datasets.handbook_simulator import HandbookConfig, simulate
from privacy.policy import PrivacyPolicy
from tests.components.test_example_gen_equivalence import example_line

REPO = Path(__file__).resolve().parents[2]
DAYS = 24


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("handbook")
    simulate(HandbookConfig(customers=60, terminals=90, days=DAYS, seed=4), out, progress=False)
    for index, path in enumerate(sorted(out.glob("span-*/*.csv"))):
        with path.open(newline="") as stream:
            rows = list(csv.reader(stream))
        header, body = rows[0], rows[1:]
        for number, row in enumerate(body):
            if number % 17 == 3:
                row[header.index("card_number")] = ""  # its own customer history, an empty card history
            if number % 13 == 5:
                row[header.index("terminal_id")] = ""  # empty terminal windows
            if number % 11 == 7:
                row[header.index("amount")] = ""  # counts as 0.0 in the windows, padding in the history
        if index % 3 == 0 and len(body) > 2:  # same card, same second: the tiebreak orders them
            twin = list(body[1])
            twin[header.index("transaction_id")] = str(10**6 + index)
            body.append(twin)
        with path.open("w", newline="") as stream:
            csv.writer(stream).writerows([header, *body])
    return out


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESTEIRA_PSEUDONYM_KEY", "card-examples-test-key-" + "c" * 32)


def lines(path: Path) -> dict[str, list[str]]:
    return {split: sorted(line for part in path.glob(f"{split}-*") for line in part.read_text().splitlines())
            for split in ("train", "eval")}


@beam.ptransform_fn
def _row_at_a_time(pipeline: beam.Pipeline, ingest: IngestPlan) -> dict[str, beam.PCollection]:
    assert ingest.time_split is not None
    return split_by_window(pipeline | AnonymizedRows(ingest), ingest.time_split)


def test_columnar_card_pass_matches_the_row_at_a_time_steps(raw: Path, tmp_path: Path) -> None:
    """k-anonymity in suppress mode (small groups dropped) and in fail mode (no row through), one pipeline."""
    doc = yaml.safe_load((REPO / "configs" / "fraud_handbook.yaml").read_text())
    windows = WindowFeaturesConfig.model_validate(doc["window_features"])
    sequence = SequenceFeaturesConfig.model_validate({**doc["sequence_features"], "length": 4})
    settings = TimeSplitSettings(train_days=6, delay_days=7, eval_days=4, history_days=windows.lookback_days)
    template = "span-{SPAN:4}/*.csv"

    def as_line(example: bytes | example_pb2.Example) -> str:
        parsed = example if isinstance(example, example_pb2.Example) else example_pb2.Example.FromString(example)
        return example_line(parsed)

    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        for mode in ("suppress", "fail"):
            section = {**doc["privacy"], "k_anonymity": {**doc["privacy"]["k_anonymity"], "k": 2,
                                                         "on_violation": mode}}  # 60 customers: some groups small
            policy = PrivacyPolicy.model_validate(section)
            plan, target, context = _time_split_files(str(raw), {"train": template, "eval": template}, DAYS,
                                                      settings, policy)
            ingest = IngestPlan(policy.canonical_json(), target, context, sequence, None, windows, plan)
            kinds = feature_kinds(policy, sequence, windows)
            for name, split in (pipeline | f"Old[{mode}]" >> _row_at_a_time(ingest)).items():
                _ = (split | f"OldEncode[{mode}{name}]" >> beam.Map(lambda row, k=kinds: as_line(to_example(row, k)))
                     | f"OldWrite[{mode}{name}]" >> beam.io.WriteToText(str(tmp_path / mode / "old" / name)))
            for name, split in (pipeline | f"New[{mode}]" >> TimeSplitExamples(ingest, kinds)).items():
                _ = (split | f"NewLine[{mode}{name}]" >> beam.Map(as_line)
                     | f"NewWrite[{mode}{name}]" >> beam.io.WriteToText(str(tmp_path / mode / "new" / name)))

    old, new = lines(tmp_path / "suppress" / "old"), lines(tmp_path / "suppress" / "new")
    assert old["train"] and old["eval"]  # rows came through: the comparison is not of two empty sets
    assert any('"history_count": ["int64_list", [0]]' in line for line in old["train"])  # a row without a card
    assert new == old
    old, new = lines(tmp_path / "fail" / "old"), lines(tmp_path / "fail" / "new")
    assert old == new == {"train": [], "eval": []}  # fail mode: a small group lets no row through
