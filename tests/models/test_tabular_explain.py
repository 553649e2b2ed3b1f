"""The breast-cancer model's explain signature, as the tabular run_fn exports it: integrated gradients per raw
feature whose sum is the score minus the baseline's (completeness), the same score as serving_raw, and the
facts file carrying the decision threshold and the configured reason texts."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from models.common.explain import BASELINE_KEY, EXPLAIN_SIGNATURE, METADATA_DIR, METADATA_FILE, attribution_key
from tests.explained_models import REASONS, THRESHOLD, ExplainedModel, shared_breast_cancer_model

# |sum of attributions - (score - baseline score)| on a probability: the quadrature of a ReLU network's
# piecewise gradient is not exact; the mean over rows is held tighter than the worst row
TOLERANCE, MEAN_TOLERANCE = 0.05, 0.01


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ExplainedModel:
    return shared_breast_cancer_model(tmp_path_factory.mktemp("tabular_explain"))


def _columns(model: ExplainedModel, rows: int) -> dict[str, tf.Tensor]:
    return {name: tf.constant([row[name] for row in model.rows[:rows]], tf.float32) for name in model.features}


def test_attributions_add_up_to_the_score_minus_the_baseline(exported: ExplainedModel) -> None:
    loaded = tf.saved_model.load(str(exported.export_dir))
    assert {"serving_default", "serving_raw", EXPLAIN_SIGNATURE} <= set(loaded.signatures)
    out = {k: v.numpy() for k, v in loaded.signatures[EXPLAIN_SIGNATURE](**_columns(exported, 32)).items()}
    attributions = np.stack([out[attribution_key(name)] for name in exported.features], axis=1)
    assert attributions.shape == (32, 30)
    score, baseline = out["probability"].reshape(-1), out[BASELINE_KEY].reshape(-1)
    gap = attributions.sum(axis=1) - (score - baseline)
    assert np.abs(gap).max() < TOLERANCE, f"completeness gap up to {np.abs(gap).max():.4f}"
    assert np.abs(gap).mean() < MEAN_TOLERANCE, f"completeness gap {np.abs(gap).mean():.4f} on average"
    assert np.abs(score - baseline).max() > 0.1  # the rows are far from the baseline: the check has teeth
    served = loaded.signatures["serving_raw"](**_columns(exported, 32))["probability"].numpy().reshape(-1)
    np.testing.assert_allclose(score, served, rtol=1e-5, atol=1e-6)
    # not one feature carries everything: the attribution spreads over features, per row differently
    assert (np.abs(attributions) > 1e-4).sum(axis=1).min() >= 3
    assert len({int(np.argmax(np.abs(row))) for row in attributions}) >= 2


def test_the_facts_file_carries_the_threshold_and_the_reason_texts(exported: ExplainedModel) -> None:
    facts = json.loads((exported.export_dir / METADATA_DIR / METADATA_FILE).read_text())
    assert facts["decision_threshold"] == THRESHOLD
    explain = facts["explain"]
    assert explain["signature"] == EXPLAIN_SIGNATURE and explain["steps"] == 32 and explain["top_k"] == 3
    by_name = {feature["name"]: feature for feature in explain["features"]}
    assert sorted(by_name) == sorted(exported.features)
    assert by_name["worst_radius"]["raises"] == REASONS["worst_radius"]["raises"]
    assert by_name["mean_texture"]["lowers"] == "mean texture lowered the score"
    assert all(by_name[name]["output"] == attribution_key(name) for name in exported.features)


def test_a_reason_for_a_feature_the_model_does_not_read_is_a_settings_error() -> None:
    from models.common.settings import SettingsError
    from models.tabular.features import TabularSettings

    config = {"data": {"label": "y", "features": {"a": "float"}},
              "model": {"explain": {"reasons": {"b": {"raises": "up", "lowers": "down"}}}}}
    with pytest.raises(SettingsError, match=r"model.explain.reasons names \['b'\].*\['a'\]"):
        TabularSettings.from_custom_config(config)
