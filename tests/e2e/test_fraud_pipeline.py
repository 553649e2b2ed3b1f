"""The fraud use case end to end on small simulated data: privacy at ingestion, the CNN+LSTM model,
a blessed push, and a leak scan proving no raw personal value reached any artifact, MLMD or serving."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import lineage
from pipeline.config import load_config
from pipeline.datasets.fraud_simulator import personal_values
from pipeline.report import load_report
from privacy.leak_scan import find_values, values_in_sqlite

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
KEY = "e2e-fraud-key-" + "k" * 50


@pytest.fixture(scope="module")
def fraud_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fraud")
    env = dict(os.environ, ESTEIRA_PSEUDONYM_KEY=KEY)
    subprocess.run([sys.executable, "-m", "pipeline.cli", "data", "fraud", "--transactions", "24000", "--days",
                    "3", "--seed", "11", "--out", "data/fraud", "--no-progress"],
                   cwd=root, env=env, check=True, capture_output=True)
    data = yaml.safe_load((REPO / "configs" / "fraud.yaml").read_text())
    data["training"].update(train_steps=150, eval_steps=5, epochs=1)
    data["evaluation"]["auc_lower_bound"] = 0.9  # a few hundred steps on 3 small days; the gate still applies
    data["optimization"] = None  # TFLite variants: tests/e2e/test_breast_cancer_pipeline.py
    config_path = root / "fraud.yaml"
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config_path)],
                            cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    config = load_config(config_path, base=root)
    return root, config, load_report(config.pipeline.metadata_path, config.pipeline.name), result.stdout


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
    needles = personal_values(root / "data" / "fraud") | {KEY}
    assert len(needles) > 1000
    assert find_values(root / "data" / "fraud", needles), "the scan must find PII in the raw input"
    assert find_values(config.pipeline.root, needles) == {}
    assert find_values(config.serving.base_path, needles) == {}
    assert values_in_sqlite(config.pipeline.metadata_path, needles) == set()
