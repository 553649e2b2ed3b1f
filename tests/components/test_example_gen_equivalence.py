"""The anonymizing ExampleGen's output is the same after its speed-up: recorded digests from before it.

The digests below were computed by this module's `digests()` on the code of commit e060ea5 (before the
fused card step and the faster day arithmetic), on handbook data small enough to run in seconds: a
time split with history, label delay and eval window, window features, card histories and k-anonymity
in suppress mode (so some groups are dropped). A digest is order-free (Beam writes rows in any order):
every example as sorted JSON, the lines sorted, then SHA-256; the row counters are compared as they are.

    TF_USE_LEGACY_KERAS=1 .venv/bin/python -m tests.components.test_example_gen_equivalence  # this tree's digests
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import apache_beam as beam
import pytest
import yaml
from tensorflow.core.example import example_pb2
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.anonymizing_example_gen.component import AnonymizingExampleGen
from components.anonymizing_example_gen.executor import Executor
from pipeline.datasets.handbook_simulator import HandbookConfig, simulate
from tests.components.test_anonymizing_example_gen_executor import read_examples

REPO = Path(__file__).resolve().parents[2]

PATTERN = "span-{SPAN:4}/*.csv"
KEY = "equivalence-test-key-" + "e" * 32
END_SPAN = 30
COUNTERS = ("rows_in", "rows_out", "rows_suppressed", "context_rows", "train_rows", "train_frauds", "eval_rows",
            "eval_frauds", "eval_known_compromised_rows", "k_anonymity_groups", "k_anonymity_small_groups")

# Recorded on commit e060ea5 with the command in the module docstring.
RECORDED = {
    "train": "c4eaf22ccfdfcaf2ec3a50b7853871ab89c5f406b9abe1c0093326e732be6de6",
    "eval": "180ffd5d6a52269b980c30b35773e340e85476fe8882cda17d7af1c3e2a8444b",
    "counters": {"rows_in": 9556, "rows_out": 7368, "rows_suppressed": 1210, "context_rows": 14431, "train_rows": 5577,
                 "train_frauds": 408, "eval_rows": 1791, "eval_frauds": 95, "eval_known_compromised_rows": 978,
                 "k_anonymity_groups": 54, "k_anonymity_small_groups": 15},
}


def example_line(example: example_pb2.Example) -> str:
    """One example as text that does not depend on how its proto was built (feature order, float repr)."""
    features = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        features[name] = [kind, [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]]
    return json.dumps(features, sort_keys=True)


def split_digest(records: list[example_pb2.Example]) -> str:
    return hashlib.sha256("\n".join(sorted(example_line(r) for r in records)).encode()).hexdigest()


def run_executor(raw: Path, tmp: Path) -> standard_artifacts.Examples:
    """The executor as the pipeline calls it for configs/fraud_handbook.yaml's sections, span END_SPAN, with
    k-anonymity on (test_anonymizing_example_gen_time_split.run turns it off)."""
    doc = yaml.safe_load((REPO / "configs" / "fraud_handbook.yaml").read_text())
    component = AnonymizingExampleGen(
        input_base=str(raw), privacy_policy=doc["privacy"], sequence_features=doc["sequence_features"],
        input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name=name, pattern=PATTERN)
                                                   for name in ("train", "eval")]),
        output_config=example_gen_pb2.Output(), window_features=doc["window_features"],
        time_split={"train_days": 8, "delay_days": 7, "eval_days": 4, "time": "timestamp", "card_key": "card_id",
                    "label": "is_fraud"})
    resolved = example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(
        name=name, pattern=PATTERN.replace("{SPAN:4}", f"{END_SPAN:04d}")) for name in ("train", "eval")])
    properties = {**component.exec_properties, "input_config": proto_utils.proto_to_json(resolved),
                  "output_config": proto_utils.proto_to_json(example_gen_pb2.Output()), "span": END_SPAN}
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp / "examples")
    context = BaseBeamExecutor.Context(beam_pipeline_args=[], tmp_dir=str(tmp / "tmp"), unique_id="1",
                                       make_beam_pipeline_fn=lambda: beam.Pipeline(runner="FnApiRunner"))
    Executor(context).Do({}, {"examples": [examples]}, properties)
    return examples


def digests(tmp: Path) -> dict:
    raw = tmp / "raw"
    simulate(HandbookConfig(customers=400, terminals=800, days=END_SPAN, seed=5), raw, progress=False)
    examples = run_executor(raw, tmp)
    counters = {name: examples.get_int_custom_property(name) for name in COUNTERS}
    return {**{split: split_digest(read_examples(examples, split)) for split in ("train", "eval")},
            "counters": counters}


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESTEIRA_PSEUDONYM_KEY", KEY)


def test_examples_and_counters_match_the_recorded_run(tmp_path: Path) -> None:
    got = digests(tmp_path)
    assert got["counters"]["rows_suppressed"] > 0  # k-anonymity dropped some groups: that path is covered
    assert got["counters"]["eval_known_compromised_rows"] > 0  # and the known-compromised rule removed rows
    assert got["counters"] == RECORDED["counters"]
    assert got["train"] == RECORDED["train"]
    assert got["eval"] == RECORDED["eval"]


if __name__ == "__main__":
    os.environ["ESTEIRA_PSEUDONYM_KEY"] = KEY
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(digests(Path(folder)), indent=4))
