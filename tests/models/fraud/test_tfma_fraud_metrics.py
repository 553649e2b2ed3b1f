"""The TFMA fraud metrics run through TFMA itself (run_model_analysis over a few hundred tf.Examples that
carry their own scores, loaded by module path as the Evaluator loads them) and equal the numpy functions
of models/fraud/metrics.py on the same rows, overall and on a slice; thresholds on them reach TFMA's
validation result, and diffs against a baseline are computed as for built-in metrics."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.fraud import metrics

MODULE = "models.fraud.tfma_metrics"
DAY = 86_400
ORIGIN = 1_522_540_800  # 2018-04-01T00:00:00Z, day index 17622
K = 5
BUDGET = 7


def make_rows(seed: int = 3) -> dict[str, np.ndarray]:
    """4 days, 12-20 cards a day, 1-4 transactions per card; category 'c' holds few cards a day."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {key: [] for key in ("card_id", "timestamp", "is_fraud", "probability",
                                                  "baseline_probability", "category")}
    for day in range(4):
        for card in rng.choice(40, size=int(rng.integers(12, 21)), replace=False):
            compromised = rng.random() < 0.2
            for _ in range(int(rng.integers(1, 5))):
                fraud = int(compromised and rng.random() < 0.6)
                rows["card_id"].append(f"card-{card:03d}".encode())
                rows["timestamp"].append(ORIGIN + day * DAY + int(rng.integers(0, DAY)))
                rows["is_fraud"].append(fraud)
                score = float(np.clip(rng.normal(0.65 if fraud else 0.3, 0.2), 0.001, 0.999))
                rows["probability"].append(score)
                rows["baseline_probability"].append(float(np.clip(score + rng.normal(0, 0.25), 0.001, 0.999)))
                rows["category"].append(b"c" if card % 8 == 0 else b"other")
    return {key: np.asarray(value) for key, value in rows.items()}


def write_examples(rows: dict[str, np.ndarray], path: Path) -> Path:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(rows["is_fraud"].size):
            feature = {
                "card_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[rows["card_id"][i]])),
                "category": tf.train.Feature(bytes_list=tf.train.BytesList(value=[rows["category"][i]])),
                "timestamp": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(rows["timestamp"][i])])),
                "is_fraud": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(rows["is_fraud"][i])])),
                "probability": tf.train.Feature(float_list=tf.train.FloatList(value=[rows["probability"][i]])),
                "baseline_probability": tf.train.Feature(
                    float_list=tf.train.FloatList(value=[rows["baseline_probability"][i]]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return path


def metric_configs(ap_floor: float) -> list:
    from tensorflow_model_analysis.proto import config_pb2 as tfma

    keys = {"card_key": "card_id", "time_key": "timestamp"}
    return [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(class_name="AveragePrecision", module=MODULE, config=json.dumps(keys),
                          threshold=tfma.MetricThreshold(
                              value_threshold=tfma.GenericValueThreshold(lower_bound={"value": ap_floor}))),
        tfma.MetricConfig(class_name="CardPrecisionAtK", module=MODULE, config=json.dumps({"k": K, **keys})),
        tfma.MetricConfig(class_name="RecallAtDailyAlertBudget", module=MODULE,
                          config=json.dumps({"alerts_per_day": BUDGET, **keys})),
    ]


def analyse(tmp_path: Path, rows: dict[str, np.ndarray], ap_floor: float, with_baseline: bool = False):
    """run_model_analysis on examples that already hold the scores (no model), returns (metrics, validation)."""
    import tensorflow_model_analysis
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_model_analysis.proto import config_pb2 as tfma

    specs = [tfma.ModelSpec(name="candidate" if with_baseline else "", label_key="is_fraud",
                            prediction_key="probability")]
    if with_baseline:
        specs.append(tfma.ModelSpec(name="baseline", label_key="is_fraud", prediction_key="baseline_probability",
                                    is_baseline=True))
    eval_config = tfma.EvalConfig(
        model_specs=specs,
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["category"])],
        metrics_specs=[tfma.MetricsSpec(metrics=metric_configs(ap_floor))])
    out = tmp_path / "evaluation"
    tensorflow_model_analysis.run_model_analysis(eval_config=eval_config,
                                                 data_location=str(write_examples(rows, tmp_path / "eval.tfr")),
                                                 output_path=str(out),
                                                 pipeline_options=PipelineOptions(["--runner=FnApiRunner"]))
    found: dict[tuple[str, str], dict[str, float]] = {}
    for per_slice in tensorflow_model_analysis.load_metrics(str(out)):
        where = "".join(key.bytes_value.decode() for key in per_slice.slice_key.single_slice_keys)
        for item in per_slice.metric_keys_and_values:
            role = ("diff" if item.key.is_diff else item.key.model_name or "candidate")
            found.setdefault((role, where), {})[item.key.name] = item.value.double_value.value
    return found, tensorflow_model_analysis.load_validation_result(str(out)), out


def expected(rows: dict[str, np.ndarray], mask: np.ndarray, score_key: str = "probability") -> dict[str, float]:
    days = rows["timestamp"][mask] // DAY
    labels, scores, cards = rows["is_fraud"][mask], rows[score_key][mask], rows["card_id"][mask]
    return {"average_precision": metrics.average_precision(labels, scores),
            f"card_precision_at_{K}": metrics.card_precision_at_k(days, cards, labels, scores, k=K)[0],
            f"recall_at_{BUDGET}_alerts_per_day": metrics.recall_at_daily_alert_budget(days, labels, scores, BUDGET)}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory):
    rows = make_rows()
    # float32 in the tf.Example: compare against the scores TFMA really reads
    rows["probability"] = rows["probability"].astype(np.float32).astype(np.float64)
    rows["baseline_probability"] = rows["baseline_probability"].astype(np.float32).astype(np.float64)
    found, validation, out = analyse(tmp_path_factory.mktemp("tfma_fraud"), rows, ap_floor=0.99, with_baseline=True)
    return rows, found, validation, out


def test_overall_values_equal_the_numpy_functions(evaluated) -> None:
    rows, found, _, _ = evaluated
    overall = found[("candidate", "")]
    want = expected(rows, np.ones(rows["is_fraud"].size, dtype=bool))
    for name, value in want.items():
        assert overall[name] == pytest.approx(value, abs=1e-9), name
    assert 0.0 < overall["average_precision"] < 1.0 and 0.0 < overall[f"card_precision_at_{K}"] <= 1.0
    per_day_cards = {}
    for day, card in zip(rows["timestamp"] // DAY, rows["card_id"], strict=True):
        per_day_cards.setdefault(day, set()).add(card)
    assert overall["cards_in_smallest_day"] == min(len(cards) for cards in per_day_cards.values())
    assert overall["example_count"] == rows["is_fraud"].size


def test_a_slice_gets_its_own_values(evaluated) -> None:
    rows, found, _, _ = evaluated
    mask = rows["category"] == b"other"
    sliced, want = found[("candidate", "other")], expected(rows, mask)
    for name, value in want.items():
        assert sliced[name] == pytest.approx(value, abs=1e-9), name
    assert sliced["average_precision"] != pytest.approx(found[("candidate", "")]["average_precision"])


def test_a_slice_with_fewer_cards_a_day_than_k_has_no_card_precision(evaluated) -> None:
    rows, found, _, _ = evaluated
    small = found[("candidate", "c")]
    assert small["cards_in_smallest_day"] < K
    assert np.isnan(small[f"card_precision_at_{K}"])
    # the book's formula would still have given a number, divided by k: the misleading figure refused here
    mask = rows["category"] == b"c"
    assert not np.isnan(expected(rows, mask)[f"card_precision_at_{K}"])
    assert small["average_precision"] == pytest.approx(expected(rows, mask)["average_precision"], abs=1e-9)


def test_the_baseline_and_the_diff_are_computed_like_built_in_metrics(evaluated) -> None:
    rows, found, _, _ = evaluated
    everything = np.ones(rows["is_fraud"].size, dtype=bool)
    base = expected(rows, everything, "baseline_probability")
    for name, value in base.items():
        assert found[("baseline", "")][name] == pytest.approx(value, abs=1e-9), name
    assert found[("diff", "")]["average_precision"] == pytest.approx(
        found[("candidate", "")]["average_precision"] - base["average_precision"], abs=1e-9)


def test_a_threshold_on_average_precision_reaches_the_validation_result(evaluated) -> None:
    _, found, validation, _ = evaluated
    assert not validation.validation_ok
    failures = [(f.metric_key.name, f.metric_key.model_name, f.metric_value.double_value.value)
                for per_slice in validation.metric_validations_per_slice for f in per_slice.failures]
    assert ("average_precision", "candidate", pytest.approx(found[("candidate", "")]["average_precision"])) in failures


def test_the_metric_names_follow_the_configuration() -> None:
    from tensorflow_model_analysis.metrics import metric_specs
    from tensorflow_model_analysis.proto import config_pb2 as tfma

    named = {metric_specs.metric_instance(tfma.MetricConfig(class_name=cls, module=MODULE, config=json.dumps(cfg))).name
             for cls, cfg in [("AveragePrecision", {}), ("CardPrecisionAtK", {"k": 100}),
                              ("RecallAtDailyAlertBudget", {"alerts_per_day": 50})]}
    assert named == {"average_precision", "card_precision_at_100", "recall_at_50_alerts_per_day"}


def test_a_missing_card_feature_is_named(tmp_path: Path) -> None:
    from models.fraud.tfma_metrics import CardPrecisionAtK

    computations = CardPrecisionAtK(k=1, card_key="card_number").computations()
    combiner = computations[0].combiner
    from tensorflow_model_analysis.metrics import metric_types

    element = metric_types.StandardMetricInputs(
        labels=np.array([1.0]), predictions=np.array([0.9]), example_weights=np.array([1.0]),
        features={"timestamp": np.array([ORIGIN])})
    with pytest.raises(metrics.FraudMetricError, match=r"'card_number' \(evaluation.card_key\) is missing"):
        combiner.add_input(combiner.create_accumulator(), element)


def test_the_run_report_reads_the_gate_and_the_metrics_from_the_evaluation(evaluated) -> None:
    from pipeline.report import _evaluation_metrics, _promotion_gate

    _, found, _, out = evaluated
    values, failures, baseline = _evaluation_metrics(str(out))
    assert values["average_precision"] == found[("candidate", "")]["average_precision"]
    gate = _promotion_gate(str(out), values, baseline)
    assert (gate.metric, gate.value, gate.lower_bound) == ("average_precision", values["average_precision"], 0.99)
    assert gate.baseline == baseline["average_precision"]
    assert f"average_precision {values['average_precision']:.4f} below the lower bound 0.99 (overall)" in failures


def test_mlflow_facts_carry_the_fraud_metrics_and_their_gate(evaluated) -> None:
    from components.mlflow_logger.facts import gate_thresholds
    from evidence.evaluation import evaluation_metrics

    _, found, _, out = evaluated
    logged = evaluation_metrics(str(out))
    for name in ("average_precision", f"card_precision_at_{K}", f"recall_at_{BUDGET}_alerts_per_day"):
        assert logged["candidate"][""][name] == found[("candidate", "")][name]
    assert np.isnan(logged["candidate"]["category_c"][f"card_precision_at_{K}"])
    assert gate_thresholds(str(out)) == {"gate.average_precision.lower_bound": 0.99}
