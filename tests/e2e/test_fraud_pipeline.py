"""The fraud use case end to end on small simulated data: privacy at ingestion, the CNN+LSTM model,
a blessed push, and a leak scan proving no raw personal value reached any artifact, MLMD or serving."""
from __future__ import annotations

import pytest

from pipeline import lineage
from pipeline.datasets.fraud_simulator import personal_values
from privacy.leak_scan import find_values, values_in_sqlite
from tests.e2e.fraud_workspace import FRAUD_KEY, FraudWorkspace

pytestmark = pytest.mark.e2e



@pytest.fixture(scope="module")
def fraud_run(fraud_workspace: FraudWorkspace):
    workspace = fraud_workspace
    return workspace.root, workspace.config, workspace.first_report, workspace.first_stdout


def test_fraud_pipeline_pushes_a_blessed_model(fraud_run) -> None:
    _root, config, report, stdout = fraud_run
    assert not report.failed
    assert report.blessed is True, report.blessing_failures
    assert report.pushed is True
    assert (config.serving.base_path / report.version / "saved_model.pb").is_file()
    assert "recall_at_fpr_0.01" in report.metrics and "auc_precision_recall" in report.metrics


def test_examples_carry_the_ingestion_evidence(fraud_run) -> None:
    _root, config, report, _ = fraud_run
    store = lineage.open_store(config.pipeline.metadata_path)
    trace = lineage.trace_pushed_model(store, lineage.pushed_models(store)[-1])
    properties = trace.examples.custom_properties
    assert len(properties["input_sha256"].string_value) == 64
    assert properties["pseudonym_key_is_demo"].int_value == 0
    assert properties["rows_in"].int_value == properties["rows_out"].int_value + properties["rows_suppressed"].int_value
    assert properties["privacy_policy_sha256"].string_value == config.privacy.sha256()


def test_no_raw_personal_value_reaches_artifacts_mlmd_or_serving(fraud_run) -> None:
    root, config, _report, _ = fraud_run
    needles = personal_values(root / "data" / "fraud") | {FRAUD_KEY}
    assert len(needles) > 1000
    assert find_values(root / "data" / "fraud", needles), "the scan must find PII in the raw input"
    assert find_values(config.pipeline.root, needles) == {}
    assert find_values(config.serving.base_path, needles) == {}
    assert values_in_sqlite(config.pipeline.metadata_path, needles) == set()
