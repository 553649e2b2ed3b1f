"""The governance section's fairness and DPO keys, checked when the config loads (before any TFX work): protected
attributes must be columns the eval examples hold with a few groups (a raw column the privacy policy drops or
generalizes names the column to use instead), the gap gate needs them, and field legal bases name processed
raw columns."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def fraud_config(tmp_path: Path, evaluation: dict | None = None, **governance):
    data = yaml.safe_load((REPO / "configs" / "fraud.yaml").read_text())
    data["governance"].update(governance)
    data["evaluation"].update(evaluation or {})
    path = tmp_path / "fraud.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path, base=tmp_path)


def error_of(tmp_path: Path, evaluation: dict | None = None, **governance) -> str:
    with pytest.raises(ConfigError) as error:
        fraud_config(tmp_path, evaluation, **governance)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_the_shipped_fraud_configs_compare_age_bands_and_regions() -> None:
    for name in ("fraud.yaml", "fraud_handbook.yaml"):
        config = load_config(REPO / "configs" / name)
        assert config.governance.protected_attributes == ["age_band", "cep_region"]
        assert config.evaluation.decision_threshold == 0.5


@pytest.mark.parametrize(("attribute", "expected"), [
    ("birth_date", "governance.protected_attributes: the privacy policy generalizes 'birth_date' into 'age_band' "
                   "while reading; name 'age_band' instead"),
    ("customer_cep", "generalizes 'customer_cep' into 'cep_region' while reading; name 'cep_region' instead"),
    ("cpf", "the privacy policy drops 'cpf' while reading, so the Evaluator never sees it and no generalized form "
            "of it is written; add one in privacy.columns (treatment: generalize) or name one of age_band, cep_region"),
    ("card_id", "'card_id' is pseudonymized: each value is one person, not a group"),
    ("card_number", "'card_number' is pseudonymized"),
    ("amount", "'amount' is a float column: every value would be its own group; generalize it into bands"),
    ("is_fraud", "'is_fraud' is the label"),
    ("religion", "'religion' is not a column the privacy policy writes; available: age_band, amount, card_id"),
])
def test_a_protected_attribute_the_examples_do_not_hold_is_named_with_the_fix(tmp_path: Path, attribute: str,
                                                                             expected: str) -> None:
    assert expected in error_of(tmp_path, protected_attributes=[attribute])


def test_a_repeated_protected_attribute_is_refused(tmp_path: Path) -> None:
    assert "age_band listed more than once" in error_of(tmp_path, protected_attributes=["age_band", "age_band"])


def test_the_gap_gate_needs_protected_attributes(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"max_false_positive_rate_gap": 0.02}, protected_attributes=[])
    assert "evaluation.max_false_positive_rate_gap needs governance.protected_attributes" in message
    config = fraud_config(tmp_path, {"max_false_positive_rate_gap": 0.02, "decision_threshold": 0.3})
    assert config.evaluation.max_false_positive_rate_gap == 0.02


def test_the_gap_gate_reaches_the_evaluators_config(tmp_path: Path) -> None:
    import json

    from pipeline.dag import FAIRNESS_METRICS_MODULE, eval_config

    config = fraud_config(tmp_path, {"max_false_positive_rate_gap": 0.02, "decision_threshold": 0.3})
    built = eval_config(config)
    assert [list(spec.feature_keys) for spec in built.slicing_specs] == [
        [], ["merchant_category"], ["amount_band"], ["age_band"], ["cep_region"]]
    metrics = built.metrics_specs[0].metrics
    gaps = [m for m in metrics if m.module == FAIRNESS_METRICS_MODULE]
    assert [json.loads(m.config) for m in gaps] == [
        {"attribute": name, "threshold": 0.3, "name": f"false_positive_rate_gap_{name}"}
        for name in ("age_band", "cep_region")]
    for metric in gaps:
        (limit,) = metric.per_slice_thresholds
        assert [list(spec.feature_keys) for spec in limit.slicing_specs] == [[]]
        assert limit.threshold.value_threshold.upper_bound.value == 0.02
    rates = {m.class_name: json.loads(m.config) for m in metrics if m.class_name in ("FPR", "FNR")}
    assert rates == {"FPR": {"thresholds": [0.3], "name": "false_positive_rate"},
                     "FNR": {"thresholds": [0.3], "name": "false_negative_rate"}}


def test_the_breast_cancer_evaluator_has_no_fairness_metrics() -> None:
    from pipeline.dag import eval_config

    metrics = eval_config(load_config(REPO / "configs" / "breast_cancer.yaml")).metrics_specs[0].metrics
    assert not [m for m in metrics if m.class_name in ("FPR", "FNR", "ProtectedGroupGaps")]


def test_field_legal_bases_name_processed_raw_columns(tmp_path: Path) -> None:
    config = fraud_config(tmp_path, field_legal_bases={"birth_date": "credit protection (art. 7, X)"})
    assert config.governance.field_legal_bases == {"birth_date": "credit protection (art. 7, X)"}
    assert "'age_band' is the output of 'birth_date'; name the raw column 'birth_date'" in error_of(
        tmp_path, field_legal_bases={"age_band": "art. 7, X"})
    assert "the privacy policy drops 'cpf' while reading, so it is not processed and needs no basis" in error_of(
        tmp_path, field_legal_bases={"cpf": "art. 7, X"})
    assert "no legal basis written for amount" in error_of(tmp_path, field_legal_bases={"amount": " "})


def test_the_retention_schedule_names_each_store(tmp_path: Path) -> None:
    schedule = {"training_data": "5 years", "prediction_memory": "24 hours", "audit_logs": "5 years"}
    config = fraud_config(tmp_path, retention_schedule=schedule, ripd="RIPD-2026-07 (DPO office)")
    assert config.governance.retention_schedule.prediction_memory == "24 hours"
    assert config.governance.ripd == "RIPD-2026-07 (DPO office)"
    message = error_of(tmp_path, retention_schedule={"training_data": "5 years"})
    assert "governance.retention_schedule.prediction_memory" in message
