"""The executor, run directly (no orchestrator): what it writes and what it records."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import apache_beam as beam
import pytest
import yaml
from tensorflow.core.example import example_pb2
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components.anonymizing_example_gen.executor import Executor
from pipeline.datasets.fraud_simulator import PII_COLUMNS, SimulationConfig, simulate
from privacy.errors import KAnonymityViolation, PseudonymKeyError, UnlistedColumnError
from privacy.fingerprint import combined_sha256, sha256_file
from privacy.policy import PrivacyPolicy

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "fraud_privacy_example.yaml"
PATTERN = "span-{SPAN:4}/*.csv"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    simulate(SimulationConfig(transactions=1800, days=3, seed=4, customers=80), out)
    return out


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESTEIRA_PSEUDONYM_KEY", "executor-test-key-" + "k" * 32)


def sections(**k_anonymity: object) -> tuple[dict, dict]:
    doc = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    doc["privacy"]["k_anonymity"].update(k_anonymity)
    return doc["privacy"], doc["sequence_features"]


def run(raw: Path, tmp: Path, privacy: dict, sequence: dict | None, span: int = 3) -> standard_artifacts.Examples:
    input_config = example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(
        name="single_split", pattern=PATTERN.replace("{SPAN:4}", f"{span:04d}"))])
    output_config = example_gen_utils.make_default_output_config(input_config)
    properties = {
        "input_base": str(raw),
        "input_config": proto_utils.proto_to_json(input_config),
        "output_config": proto_utils.proto_to_json(output_config),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        "privacy_policy": PrivacyPolicy.model_validate(privacy).canonical_json(),
        "sequence_features": json.dumps(sequence) if sequence else None,
        "input_pattern_templates": json.dumps({"single_split": PATTERN}),
        "span": span,
    }
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp / "examples")
    context = BaseBeamExecutor.Context(
        beam_pipeline_args=[], tmp_dir=str(tmp / "tmp"), unique_id="1",
        make_beam_pipeline_fn=lambda: beam.Pipeline(runner="FnApiRunner"),  # in-process, no Prism download
    )
    Executor(context).Do({}, {"examples": [examples]}, properties)
    return examples


def read_examples(examples: standard_artifacts.Examples, split: str) -> list[example_pb2.Example]:
    records = []
    for path in sorted(Path(artifact_utils.get_split_uri([examples], split)).glob("*.gz")):
        data = gzip.decompress(path.read_bytes())
        while data:  # TFRecord framing: length (8), crc (4), payload, crc (4)
            length = int.from_bytes(data[:8], "little")
            records.append(example_pb2.Example.FromString(data[12:12 + length]))
            data = data[16 + length:]
    return records


def test_writes_anonymized_examples_with_histories_and_records_the_evidence(raw: Path, tmp_path: Path) -> None:
    privacy, sequence = sections(k=3, on_violation="suppress")
    examples = run(raw, tmp_path, privacy, sequence)
    props = {name: examples.get_custom_property(name) for name in examples.mlmd_artifact.custom_properties}

    span_file = raw / "span-0003" / "transactions.csv"
    assert props["input_sha256"] == combined_sha256([sha256_file(str(span_file))])
    assert json.loads(props["input_file_sha256"]) == {"span-0003/transactions.csv": sha256_file(str(span_file))}
    rows_in = sum(1 for _ in span_file.open()) - 1
    assert props["rows_in"] == rows_in
    assert props["rows_out"] + props["rows_suppressed"] == rows_in and props["rows_out"] > 0
    assert props["privacy_policy_sha256"] == PrivacyPolicy.model_validate(privacy).sha256()
    assert json.loads(props["privacy_policy"])["columns"]["cpf"] == {"treatment": "drop"}
    assert props["pseudonym_key_is_demo"] == 0 and props["pseudonym_key_source"] == "env:ESTEIRA_PSEUDONYM_KEY"
    assert props["context_rows"] > 0 and "span-0001/transactions.csv" in json.loads(props["context_file_sha256"])
    assert props["k_anonymity_k"] == 3

    records = read_examples(examples, "train") + read_examples(examples, "eval")
    assert len(records) == props["rows_out"]
    features = records[0].features.feature
    assert {"card_id", "age_band", "cep_region", "history_amount", "history_mask"} <= set(features)
    assert not set(features) & set(PII_COLUMNS)
    assert len(features["history_amount"].float_list.value) == 10
    # span 3's first transactions have histories from spans 1-2, read as context
    assert max(sum(r.features.feature["history_mask"].int64_list.value) for r in records) == 10


def test_demo_key_is_recorded(raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESTEIRA_PSEUDONYM_KEY")
    privacy, _ = sections(k=2, on_violation="suppress")
    privacy["key"]["use_demo_key"] = True
    examples = run(raw, tmp_path, privacy, None, span=1)
    assert examples.get_custom_property("pseudonym_key_is_demo") == 1
    assert examples.get_custom_property("pseudonym_key_source") == "demo"


def test_missing_key_stops_the_run_before_reading(raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESTEIRA_PSEUDONYM_KEY")
    privacy, _ = sections()
    with pytest.raises(PseudonymKeyError, match="ESTEIRA_PSEUDONYM_KEY is not set"):
        run(raw, tmp_path, privacy, None)
    assert not (tmp_path / "examples").exists()


def test_unlisted_column_stops_the_run_naming_it(raw: Path, tmp_path: Path) -> None:
    privacy, _ = sections()
    del privacy["columns"]["email"]
    with pytest.raises(UnlistedColumnError, match=r"column 'email' of .*span-0003/transactions\.csv is not in "
                                                  r"privacy\.columns; add it with one of keep\|drop\|pseudonymize"):
        run(raw, tmp_path, privacy, None)


def test_k_anonymity_violation_fails_with_a_report_and_leaves_no_examples(raw: Path, tmp_path: Path) -> None:
    privacy, _ = sections(k=50, on_violation="fail")
    with pytest.raises(KAnonymityViolation) as caught:
        run(raw, tmp_path, privacy, None)
    message = str(caught.value)
    assert "k-anonymity violated" in message and "fewer than k=50 distinct card_id" in message
    assert "(age_band, cep_region)" in message and "on_violation: suppress" in message
    assert not list((tmp_path / "examples").glob("Split-*"))


def test_component_parameters_hold_the_policy_but_no_key() -> None:
    from components.anonymizing_example_gen import AnonymizingExampleGen

    privacy, sequence = sections()
    component = AnonymizingExampleGen(input_base="/data", privacy_policy=privacy, sequence_features=sequence,
                                      input_config=example_gen_pb2.Input(splits=[
                                          example_gen_pb2.Input.Split(name="single_split", pattern=PATTERN)]))
    parameters = component.exec_properties
    assert PrivacyPolicy.from_json(parameters["privacy_policy"]) == PrivacyPolicy.model_validate(privacy)
    assert json.loads(parameters["input_pattern_templates"]) == {"single_split": PATTERN}
    assert "executor-test-key" not in json.dumps({k: str(v) for k, v in parameters.items()})


def test_component_refuses_inconsistent_settings_at_construction() -> None:
    from components.anonymizing_example_gen import AnonymizingExampleGen

    privacy, sequence = sections()
    with pytest.raises(ValueError, match=r"lookback_spans needs input patterns with \{SPAN\}"):
        AnonymizingExampleGen(input_base="/data", privacy_policy=privacy, sequence_features=sequence)
    with pytest.raises(ValueError, match="column 'cpf', which the privacy policy does not output"):
        AnonymizingExampleGen(input_base="/data", privacy_policy=privacy,
                              sequence_features={**sequence, "features": ["cpf"], "lookback_spans": 0})
