"""The evaluation section: the fraud metrics' keys, the promotion gate on any reported metric (the auc_*
keys still describe the gate on AUC), one-line errors, and the TFMA EvalConfig the Evaluator gets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, EvaluationConfig, GateConfig, load_config

REPO = Path(__file__).resolve().parents[2]
FRAUD_KEYS = {"card_key": "card_id", "time_key": "timestamp"}


def fraud_config(tmp_path: Path, **evaluation):
    data = yaml.safe_load((REPO / "configs" / "fraud.yaml").read_text())
    data["evaluation"] = {key: value for key, value in data["evaluation"].items()
                          if key in ("slice_features", "transform_signature", "recall_at_false_positive_rates")}
    data["evaluation"].update(evaluation)
    path = tmp_path / "fraud.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path, base=tmp_path)


def error_of(tmp_path: Path, **evaluation) -> str:
    with pytest.raises(ConfigError) as error:
        fraud_config(tmp_path, **evaluation)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_the_auc_keys_are_the_gate_on_auc() -> None:
    gate = EvaluationConfig(auc_lower_bound=0.95, auc_change_threshold=-0.02, auc_relative_improvement=0.01,
                            champion_auc_margin=0.005).promotion_gate()
    assert gate == GateConfig(metric="auc", lower_bound=0.95, change_threshold=-0.02, relative_improvement=0.01,
                              champion_margin=0.005)


def test_reported_metrics_follow_the_keys() -> None:
    evaluation = EvaluationConfig(recall_at_false_positive_rates=[0.01], card_precision_k=50, alerts_per_day=[20, 100],
                                  **FRAUD_KEYS)
    assert evaluation.metric_names() == [
        "auc", "auc_precision_recall", "binary_accuracy", "precision", "recall", "recall_at_fpr_0.01",
        "average_precision", "card_precision_at_50", "recall_at_20_alerts_per_day", "recall_at_100_alerts_per_day"]
    assert "card_precision_at_100" not in EvaluationConfig().metric_names()


def test_a_gate_on_average_precision_loads(tmp_path: Path) -> None:
    config = fraud_config(tmp_path, **FRAUD_KEYS, alerts_per_day=[100],
                          gate={"metric": "average_precision", "lower_bound": 0.5, "change_threshold": -0.02})
    gate = config.evaluation.promotion_gate()
    assert (gate.metric, gate.lower_bound, gate.change_threshold, gate.champion_margin) == (
        "average_precision", 0.5, -0.02, 0.0)


def test_an_unknown_gate_metric_lists_the_allowed_ones(tmp_path: Path) -> None:
    message = error_of(tmp_path, gate={"metric": "ap", "lower_bound": 0.5})
    assert "evaluation.gate.metric: unknown metric 'ap'; allowed: auc, auc_precision_recall" in message
    assert "recall_at_fpr_0.01, average_precision" in message


def test_card_precision_cannot_gate_without_a_card_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, gate={"metric": "card_precision_at_100", "lower_bound": 0.2})
    assert "unknown metric 'card_precision_at_100'" in message and "evaluation.card_key" in message


def test_a_gate_with_no_threshold_is_refused(tmp_path: Path) -> None:
    assert "evaluation.gate checks nothing" in error_of(tmp_path, gate={"metric": "auc"})


def test_auc_keys_beside_a_gate_are_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, auc_lower_bound=0.98, champion_auc_margin=0.01,
                       gate={"metric": "average_precision", "lower_bound": 0.5})
    assert "evaluation.auc_lower_bound, evaluation.champion_auc_margin apply only without evaluation.gate" in message


@pytest.mark.parametrize(("evaluation", "expected"), [
    ({"alerts_per_day": [100]}, "evaluation.alerts_per_day needs evaluation.time_key"),
    ({"card_key": "card_id"}, "evaluation.card_key needs evaluation.time_key"),
    ({"card_precision_k": 50}, "evaluation.card_precision_k needs evaluation.card_key"),
    ({"card_precision_k": 0, **FRAUD_KEYS}, "evaluation.card_precision_k"),
    ({"alerts_per_day": [0], **FRAUD_KEYS}, "evaluation.alerts_per_day"),
    ({"card_key": "card_number", "time_key": "timestamp"},
     "evaluation.card_key: 'card_number' is not a column the privacy policy writes; available: "),
    ({"gate": {"metric": "average_precision", "lower_bound": 1.5}}, "evaluation.gate.lower_bound"),
])
def test_bad_fraud_metric_keys_are_named(tmp_path: Path, evaluation: dict, expected: str) -> None:
    assert expected in error_of(tmp_path, **evaluation)


def test_eval_config_gates_the_configured_metric_on_the_overall_slice(tmp_path: Path) -> None:
    from pipeline.dag import FRAUD_METRICS_MODULE, eval_config

    config = fraud_config(tmp_path, **FRAUD_KEYS, card_precision_k=50, alerts_per_day=[100],
                          gate={"metric": "average_precision", "lower_bound": 0.5, "change_threshold": -0.02,
                                "relative_improvement": 0.01})
    metrics = eval_config(config).metrics_specs[0].metrics
    by_name = {json.loads(m.config or "{}").get("name", m.class_name): m for m in metrics}
    assert set(config.evaluation.metric_names()) <= set(by_name) | {"auc", "auc_precision_recall",
                                                                    "binary_accuracy", "precision", "recall"}
    gated = [m for m in metrics if m.per_slice_thresholds or m.HasField("threshold")]
    assert [m.class_name for m in gated] == ["AveragePrecision"]
    (per_slice,) = gated[0].per_slice_thresholds
    assert [spec.feature_keys for spec in per_slice.slicing_specs] == [[]]  # overall slice only
    threshold = per_slice.threshold
    assert threshold.value_threshold.lower_bound.value == 0.5
    assert threshold.change_threshold.absolute.value == -0.02
    assert threshold.change_threshold.relative.value == 0.01
    card = by_name["card_precision_at_50"]
    assert card.module == FRAUD_METRICS_MODULE
    assert json.loads(card.config) == {"name": "card_precision_at_50", "k": 50, **FRAUD_KEYS}
    assert json.loads(by_name["recall_at_100_alerts_per_day"].config)["alerts_per_day"] == 100


def test_breast_cancer_keeps_its_auc_gate() -> None:
    from pipeline.dag import eval_config

    config = load_config(REPO / "configs" / "breast_cancer.yaml")
    metrics = eval_config(config).metrics_specs[0].metrics
    (auc,) = [m for m in metrics if m.per_slice_thresholds]
    assert auc.class_name == "AUC"
    threshold = auc.per_slice_thresholds[0].threshold
    assert threshold.value_threshold.lower_bound.value == config.evaluation.auc_lower_bound
    assert threshold.change_threshold.absolute.value == config.evaluation.auc_change_threshold
    assert not threshold.change_threshold.HasField("relative")


def test_the_configured_names_are_the_ones_tfma_records() -> None:
    from tensorflow_model_analysis.metrics import metric_specs

    from pipeline.dag import metric_configs

    evaluation = EvaluationConfig(recall_at_false_positive_rates=[0.05], card_precision_k=30, alerts_per_day=[7],
                                  **FRAUD_KEYS)
    configs = metric_configs(evaluation)
    assert list(configs) == evaluation.metric_names()
    assert [metric_specs.metric_instance(config).name for config in configs.values()] == evaluation.metric_names()
