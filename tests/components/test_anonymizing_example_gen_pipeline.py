"""A real TFX run (LocalDagRunner, sqlite MLMD): AnonymizingExampleGen -> StatisticsGen, then a scan of
every file under the pipeline root and of the MLMD database for the raw personal data of the input."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import yaml
from apache_beam.options.pipeline_options import StandardOptions
from ml_metadata.metadata_store import metadata_store
from tensorflow.core.example import example_pb2
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.proto import example_gen_pb2

from components.anonymizing_example_gen import AnonymizingExampleGen
from pipeline.datasets.fraud_simulator import INPUT_PATTERN, SimulationConfig, personal_values, simulate
from privacy.leak_scan import find_values as scan
from privacy.leak_scan import sqlite_text as sqlite_dump

pytestmark = pytest.mark.e2e

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "fraud_privacy_example.yaml"
SECRET = "pipeline-test-key-" + "s" * 40


def test_no_raw_personal_data_reaches_any_artifact_or_mlmd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw"
    simulate(SimulationConfig(transactions=1200, days=2, seed=9, customers=60), raw)
    monkeypatch.setenv("ESTEIRA_PSEUDONYM_KEY", SECRET)
    # beam_pipeline_args=[] keeps TFX from building an sdist per Beam component; Beam's default
    # runner would then try to download Prism first, so make the in-process FnApiRunner the default.
    monkeypatch.setattr(StandardOptions, "DEFAULT_RUNNER", "FnApiRunner")

    doc = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    doc["privacy"]["k_anonymity"]["k"] = 2
    example_gen = AnonymizingExampleGen(
        input_base=str(raw),
        privacy_policy=doc["privacy"],
        sequence_features={**doc["sequence_features"], "lookback_spans": 1},
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="single_split", pattern=INPUT_PATTERN)]),
    )
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    root, database = tmp_path / "pipeline_root", tmp_path / "mlmd" / "metadata.db"
    connection = metadata.sqlite_metadata_connection_config(str(database))
    LocalDagRunner().run(tfx_pipeline.Pipeline(
        pipeline_name="privacy-at-ingestion", pipeline_root=str(root),
        components=[example_gen, statistics_gen], metadata_connection_config=connection,
        enable_cache=False, beam_pipeline_args=[],
    ))

    store = metadata_store.MetadataStore(connection)
    [examples] = store.get_artifacts_by_type("Examples")
    props = examples.custom_properties
    assert props["span"].int_value == 2  # the latest span, with span 1 read as history context only
    assert props["rows_in"].int_value == props["rows_out"].int_value + props["rows_suppressed"].int_value > 0
    assert props["context_rows"].int_value > 0
    assert len(props["input_sha256"].string_value) == 64 and props["pseudonym_key_is_demo"].int_value == 0
    assert len(store.get_artifacts_by_type("ExampleStatistics")) == 1
    assert any(Path(root).rglob("FeatureStats.pb"))

    pii = personal_values(raw)
    assert len(pii) > 300
    assert scan(raw, pii), "the scan must find the personal data in the raw input"
    pseudonyms_found = scan(root, _card_pseudonyms(store))
    assert any(path.endswith(".gz") for path in pseudonyms_found), "the scan must read inside gzip files"

    assert scan(root, pii | {SECRET}) == {}
    assert scan(database.parent, pii | {SECRET}) == {}
    dump = sqlite_dump(database)
    assert "privacy_policy" in dump  # the policy is in MLMD; the values and the key are not
    assert not [value for value in pii | {SECRET} if value in dump]


def _card_pseudonyms(store: metadata_store.MetadataStore) -> set[str]:
    """A few pseudonymized card ids, read back from the examples, as a positive control for the scan."""
    [examples] = store.get_artifacts_by_type("Examples")
    path = next(Path(examples.uri).rglob("*.gz"))
    data = gzip.decompress(path.read_bytes())
    length = int.from_bytes(data[:8], "little")
    record = example_pb2.Example.FromString(data[12:12 + length])
    return {record.features.feature["card_id"].bytes_list.value[0].decode()}
