"""The fraud model's explain signature as run_fn exports it: one attribution per current-transaction column and
one for the card history as a whole (CNN + LSTM + attention), adding up to the score minus the baseline's,
on the same inputs as serving_raw; the history's padding stays padding along the path."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from fraud_helpers import FEATURES, TransformRun, custom_config
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
from tfx_bsl.public import tfxio

from models.common.explain import BASELINE_KEY, EXPLAIN_SIGNATURE, METADATA_DIR, METADATA_FILE, attribution_key
from models.common.settings import HISTORY_GROUP
from models.fraud.model import run_fn
from models.fraud.signatures import RAW_SIGNATURE

TOLERANCE, MEAN_TOLERANCE = 0.05, 0.01


@pytest.fixture(scope="module")
def exported(transform_run: TransformRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fraud_explain")

    def factory(files: list[str], options: tfxio.TensorFlowDatasetOptions, schema: Any) -> tf.data.Dataset:
        return tfxio.TFExampleRecord(file_pattern=files, schema=schema).TensorFlowDataset(options)

    config = custom_config()
    config["decision_threshold"] = 0.2
    config["model"]["explain"] = {"steps": 32, "reasons": {
        HISTORY_GROUP: {"raises": "the card's recent transactions look like a fraud burst",
                        "lowers": "the card's recent transactions look like its usual ones"}}}
    run_fn(FnArgs(train_files=transform_run.train_files, eval_files=transform_run.eval_files,
                  train_steps=20, eval_steps=2, transform_output=transform_run.transform_dir,
                  transform_graph_path=transform_run.transform_dir,
                  data_accessor=DataAccessor(tf_dataset_factory=factory, record_batch_factory=None,
                                             data_view_decode_fn=None),
                  serving_model_dir=str(root / "Format-Serving"), model_run_dir=str(root / "model_run"),
                  custom_config=config))
    return root / "Format-Serving"


def _raw_batch(rows: list[dict[str, Any]], specs: dict[str, tf.TensorSpec]) -> dict[str, tf.Tensor]:
    batch = {}
    for name, spec in specs.items():
        values = [row[name][0] if spec.shape.rank == 1 else row[name] for row in rows]
        batch[name] = tf.constant(values, dtype=spec.dtype)
    return batch


def test_attributions_of_columns_and_history_add_up_to_the_score_minus_the_baseline(
        exported: Path, transform_run: TransformRun) -> None:
    loaded = tf.saved_model.load(str(exported))
    explain = loaded.signatures[EXPLAIN_SIGNATURE]
    specs = explain.structured_input_signature[1]
    assert specs == loaded.signatures[RAW_SIGNATURE].structured_input_signature[1]
    rows = transform_run.eval_rows[:24]
    out = {key: value.numpy() for key, value in explain(**_raw_batch(rows, specs)).items()}
    groups = [*FEATURES, HISTORY_GROUP]
    assert sorted(key for key in out if key.startswith("attribution_")) == sorted(map(attribution_key, groups))
    attributions = np.stack([out[attribution_key(name)] for name in groups], axis=1)
    score, baseline = out["probability"].reshape(-1), out[BASELINE_KEY].reshape(-1)
    gap = np.abs(attributions.sum(axis=1) - (score - baseline))
    assert gap.max() < TOLERANCE and gap.mean() < MEAN_TOLERANCE, f"gaps {gap.max():.4f} / {gap.mean():.4f}"
    served = loaded.signatures[RAW_SIGNATURE](**_raw_batch(rows, specs))["probability"].numpy().reshape(-1)
    np.testing.assert_allclose(score, served, rtol=1e-5, atol=1e-6)
    history = out[attribution_key(HISTORY_GROUP)]
    with_history = np.array([row["history_count"][0] > 0 for row in rows])
    assert np.all(history[~with_history] == 0.0)  # no earlier step: nothing to attribute to the history
    assert np.abs(history[with_history]).max() > 1e-4


def test_the_facts_file_names_the_history_reason_and_the_threshold(exported: Path) -> None:
    facts = json.loads((exported / METADATA_DIR / METADATA_FILE).read_text())
    assert facts["decision_threshold"] == 0.2
    features = {feature["name"]: feature for feature in facts["explain"]["features"]}
    assert sorted(features) == sorted([*FEATURES, HISTORY_GROUP])
    assert features[HISTORY_GROUP]["raises"] == "the card's recent transactions look like a fraud burst"
