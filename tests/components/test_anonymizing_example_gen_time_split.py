"""The executor with a time split and window features, run directly on the handbook simulator's data."""
from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import yaml
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.anonymizing_example_gen.component import AnonymizingExampleGen
from components.anonymizing_example_gen.executor import Executor
from models.fraud.window_features import WINDOW_FEATURE_NAMES
from pipeline.datasets.handbook_simulator import HandbookConfig, simulate
from tests.components.test_anonymizing_example_gen_executor import read_examples

REPO = Path(__file__).resolve().parents[2]
PATTERN = "span-{SPAN:4}/*.csv"
DAY = 86_400


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("handbook")
    simulate(HandbookConfig(customers=120, terminals=200, days=30, seed=2), out, progress=False)
    return out


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESTEIRA_PSEUDONYM_KEY", "time-split-test-key-" + "k" * 32)


def sections() -> dict:
    doc = yaml.safe_load((REPO / "configs" / "fraud_handbook.yaml").read_text())
    doc["privacy"]["k_anonymity"] = None  # a few hundred customers make small groups; not under test here
    return doc


def run(raw: Path, tmp: Path, end_span: int, split: dict) -> standard_artifacts.Examples:
    """What the pipeline does: the component's parameters, TFX's span resolution, then the executor."""
    doc = sections()
    component = AnonymizingExampleGen(
        input_base=str(raw), privacy_policy=doc["privacy"], sequence_features=doc["sequence_features"],
        input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name=name, pattern=PATTERN)
                                                   for name in ("train", "eval")]),
        output_config=example_gen_pb2.Output(), window_features=doc["window_features"],
        time_split={**split, "time": "timestamp", "card_key": "card_id", "label": "is_fraud"})
    resolved = example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(
        name=name, pattern=PATTERN.replace("{SPAN:4}", f"{end_span:04d}")) for name in ("train", "eval")])
    properties = {**component.exec_properties, "input_config": proto_utils.proto_to_json(resolved),
                  "output_config": proto_utils.proto_to_json(example_gen_pb2.Output()), "span": end_span}
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp / "examples")
    context = BaseBeamExecutor.Context(beam_pipeline_args=[], tmp_dir=str(tmp / "tmp"), unique_id="1",
                                       make_beam_pipeline_fn=lambda: beam.Pipeline(runner="FnApiRunner"))
    Executor(context).Do({}, {"examples": [examples]}, properties)
    return examples


def values(records, name: str) -> np.ndarray:
    feature = records[0].features.feature[name]
    kind = feature.WhichOneof("kind")
    return np.array([getattr(r.features.feature[name], kind).value[0] for r in records])


def test_time_split_emits_train_and_eval_windows_with_causal_features(raw: Path, tmp_path: Path) -> None:
    examples = run(raw, tmp_path, end_span=30, split={"train_days": 5, "delay_days": 4, "eval_days": 6})
    props = {name: examples.get_custom_property(name) for name in examples.mlmd_artifact.custom_properties}
    # days: history 0..14 (spans 1-15), train 15..19 (spans 16-20), delay 20..23, eval 24..29 (spans 25-30)
    assert (props["train_first_span"], props["train_last_span"]) == (16, 20)
    assert (props["delay_first_span"], props["delay_last_span"]) == (21, 24)
    assert (props["eval_first_span"], props["eval_last_span"]) == (25, 30)
    assert (props["train_first_date"], props["eval_last_date"]) == ("2018-04-16", "2018-04-30")
    assert (props["history_first_span"], props["history_last_span"]) == (1, 15)
    assert json.loads(props["time_split"])["history_days"] == 37  # 30-day terminal windows + 7-day delay

    train, evaluation = read_examples(examples, "train"), read_examples(examples, "eval")
    assert len(train) == props["train_rows"] > 0 and len(evaluation) == props["eval_rows"] > 0
    assert props["rows_out"] == len(train) + len(evaluation)
    manifest = json.loads((raw / "manifest.json").read_text())
    by_span = {s["span"]: s for s in manifest["spans"]}
    assert props["train_rows"] == sum(by_span[s]["rows"] for s in range(16, 21))
    train_frauds = sum(by_span[s]["fraud_rows"] for s in range(16, 21))
    assert props["train_frauds"] == train_frauds == values(train, "is_fraud").sum()
    eval_rows = sum(by_span[s]["rows"] for s in range(25, 31))
    assert props["eval_known_compromised_rows"] > 0
    assert props["eval_rows"] + props["eval_known_compromised_rows"] == eval_rows
    origin = int(datetime(2018, 4, 1, tzinfo=UTC).timestamp())
    assert set((values(train, "timestamp") - origin) // DAY) == set(range(15, 20))
    assert set((values(evaluation, "timestamp") - origin) // DAY) == set(range(24, 30))

    # no eval card had a fraud in the train window (those cards are known compromised)
    train_fraud_cards = set(values(train, "card_id")[values(train, "is_fraud") == 1])
    assert train_fraud_cards and not train_fraud_cards & set(values(evaluation, "card_id"))
    features = evaluation[0].features.feature
    assert set(WINDOW_FEATURE_NAMES) <= set(features) and "history_amount" in features
    assert features["terminal_risk_7d"].float_list.value and features["during_night"].int64_list.value
    # the first train day has 15 days of history: its customer windows count context rows
    assert values(train, "customer_nb_tx_30d").max() > values(train, "customer_nb_tx_1d").max()
    # train terminal windows end 7 days back, inside the history: only context rows can fill them
    assert (values(train, "terminal_nb_tx_30d") > 0).mean() > 0.5


def test_without_a_manifest_the_rows_date_the_spans(raw: Path, tmp_path: Path) -> None:
    bare = tmp_path / "raw"
    shutil.copytree(raw, bare, ignore=shutil.ignore_patterns("manifest.json"))
    examples = run(bare, tmp_path, end_span=30, split={"train_days": 5, "delay_days": 4, "eval_days": 6})
    assert examples.get_custom_property("train_first_date") == "2018-04-16"
    assert examples.get_custom_property("time_split_origin_seconds") == int(
        datetime(2018, 4, 1, tzinfo=UTC).timestamp())


def test_a_missing_window_span_stops_the_run_naming_it(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"the time split needs span 35 \(2018-05-05\)"):
        run(raw, tmp_path, end_span=40, split={"train_days": 5, "delay_days": 4, "eval_days": 6})


def test_component_refuses_hash_output_splits_with_a_time_split() -> None:
    doc = sections()
    with pytest.raises(ValueError, match="a time split divides rows by day: give no output split_config"):
        AnonymizingExampleGen(
            input_base="/nowhere", privacy_policy=doc["privacy"],
            input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name=name, pattern=PATTERN)
                                                       for name in ("train", "eval")]),
            output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
                splits=[example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=1)])),
            window_features=doc["window_features"], time_split={"train_days": 1, "delay_days": 0, "eval_days": 1})
