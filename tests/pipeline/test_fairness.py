"""Fairness across protected groups: the numpy table (rates at the decision threshold, AP, largest gaps with a
stratified bootstrap interval) and one in-process TFMA run over a few hundred tf.Examples that carry their own
scores, configured by the Evaluator's own builder: the per-group figures TFMA computes on each slice equal the
table, and the false-positive-rate gap gate refuses the candidate when the gap is above the limit."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evidence.fairness import AttributeFairness, read_fairness
from models.fraud.metrics import average_precision
from pipeline import fairness

THRESHOLD = 0.375  # exact in float32, so rows can sit exactly on it
LIMIT = 0.05


def make_rows(seed: int = 5) -> dict[str, np.ndarray]:
    """Three age bands; '65+' gets higher scores on legitimate rows (more false positives)."""
    rng = np.random.default_rng(seed)
    bands = rng.choice(np.array([b"18-24", b"35-44", b"65+"]), size=600, p=[0.3, 0.45, 0.25])
    labels = (rng.random(600) < 0.12).astype(np.int64)
    shift = np.where(bands == b"65+", 0.15, 0.0)
    scores = np.clip(np.where(labels == 1, rng.normal(0.6, 0.2, 600), rng.normal(0.2, 0.15, 600) + shift), 0.001, 0.999)
    scores = scores.astype(np.float32).astype(np.float64)  # what TFMA reads back from a float_list
    scores[:3] = THRESHOLD  # exactly at the threshold: not an alert (TFMA's convention)
    return {"age_band": bands, "is_fraud": labels, "probability": scores}


def expected_group(rows: dict[str, np.ndarray], band: bytes) -> dict[str, float]:
    mask = rows["age_band"] == band
    y, s = rows["is_fraud"][mask], rows["probability"][mask]
    return {"false_positive_rate": float(np.mean(s[y == 0] > THRESHOLD)),
            "false_negative_rate": float(np.mean(s[y == 1] <= THRESHOLD)),
            "average_precision": average_precision(y, s)}


def test_the_table_holds_each_groups_rates_and_the_largest_gap() -> None:
    rows = make_rows()
    table = fairness.group_fairness("age_band", rows["age_band"], rows["is_fraud"], rows["probability"], THRESHOLD)
    assert [group.group for group in table.groups] == ["18-24", "35-44", "65+"]
    for group in table.groups:
        want = expected_group(rows, group.group.encode())
        assert group.false_positive_rate == pytest.approx(want["false_positive_rate"])
        assert group.false_negative_rate == pytest.approx(want["false_negative_rate"])
        assert group.average_precision == pytest.approx(want["average_precision"])
        assert group.examples == group.negatives + group.positives
    gap = table.false_positive_rate_gap
    rates = {group.group: group.false_positive_rate for group in table.groups}
    assert gap.high_group == "65+" and gap.value == pytest.approx(max(rates.values()) - min(rates.values()))
    assert gap.low_group == min(rates, key=rates.get)
    assert gap.lower < gap.value < gap.upper and gap.groups_compared == 3
    again = fairness.group_fairness("age_band", rows["age_band"], rows["is_fraud"], rows["probability"], THRESHOLD)
    assert again == table  # a fixed seed: the same interval every run


def test_a_gap_needs_two_groups_that_define_the_figure() -> None:
    labels = np.array([0, 0, 1, 0, 0])
    table = fairness.group_fairness("region", [b"1", b"1", b"1", b"2", b"2"], labels,
                                    np.array([0.9, 0.1, 0.8, 0.2, 0.3]), 0.5, replicates=50)
    assert table.by_group["2"].false_negative_rate is None and table.by_group["2"].average_precision is None
    assert table.gaps["false_negative_rate"].value is None
    assert "undefined (fewer than two groups define false_negative_rate)" in table.gaps[
        "false_negative_rate"].describe(table.by_group)
    assert table.false_positive_rate_gap.value == pytest.approx(0.5)
    limited = AttributeFairness(**{**table.__dict__, "max_false_positive_rate_gap": 0.1})
    assert limited.gate_passed is False
    assert limited.gate_text().startswith("region false-positive-rate gap 0.5000 (1 0.5000 vs 2 0.0000; 95 % "
                                          "bootstrap interval [")
    assert "above the limit 0.1 (evaluation.max_false_positive_rate_gap)" in limited.gate_text()


def test_the_resampled_average_precision_is_that_of_the_repeated_rows() -> None:
    """The bootstrap's AP, computed from fraud weights and legitimate counts per score band, equals models/fraud's
    average_precision on the rows really repeated that many times (ties included)."""
    rng = np.random.default_rng(1)
    labels = (rng.random(80) < 0.3).astype(np.int64)
    scores = np.round(rng.random(80), 1)  # ties, within and across the classes
    ranked = fairness.RankedGroup.of(labels, scores)
    weights = rng.integers(0, 3, size=(4, 80))
    weights[:, np.flatnonzero(labels)[0]] += 1  # every resample keeps a fraud
    fraud_weights = weights[:, labels == 1].astype(np.float64)
    legit_counts = np.stack([np.bincount(ranked.legit_band, weights=line[labels == 0],
                                         minlength=ranked.fraud_scores.size + 1) for line in weights])
    got = ranked.average_precision(fraud_weights, legit_counts)
    for line, value in zip(weights, got, strict=True):
        assert value == pytest.approx(average_precision(np.repeat(labels, line), np.repeat(scores, line)))
    ones = np.ones((1, int(labels.sum())))
    assert ranked.average_precision(ones, np.bincount(ranked.legit_band, minlength=ones.shape[1] + 1)[None, :])[0] \
        == pytest.approx(average_precision(labels, scores))


def test_the_table_survives_its_json() -> None:
    rows = make_rows()
    table = fairness.group_fairness("age_band", rows["age_band"], rows["is_fraud"], rows["probability"], THRESHOLD,
                                    replicates=20)
    assert AttributeFairness.from_dict(json.loads(table.to_json())) == table


def write_examples(rows: dict[str, np.ndarray], path: Path) -> Path:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(rows["is_fraud"].size):
            feature = {
                "age_band": tf.train.Feature(bytes_list=tf.train.BytesList(value=[rows["age_band"][i]])),
                "is_fraud": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(rows["is_fraud"][i])])),
                "probability": tf.train.Feature(float_list=tf.train.FloatList(value=[rows["probability"][i]]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory):
    """The Evaluator's fairness metrics and slices (pipeline/dag.py) run by TFMA on examples holding scores."""
    import tensorflow_model_analysis as tfma
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.config import EvaluationConfig
    from pipeline.dag import fairness_metric_configs

    rows = make_rows()
    folder = tmp_path_factory.mktemp("tfma_fairness")
    evaluation = EvaluationConfig(decision_threshold=THRESHOLD, max_false_positive_rate_gap=LIMIT)
    eval_config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="is_fraud", prediction_key="probability")],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["age_band"])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="AveragePrecision", module="models.fraud.tfma_metrics"),
            *fairness_metric_configs(evaluation, ["age_band"])])])
    out = folder / "evaluation"
    tfma.run_model_analysis(eval_config=eval_config, data_location=str(write_examples(rows, folder / "eval.tfr")),
                            output_path=str(out), pipeline_options=PipelineOptions(["--runner=FnApiRunner"]))
    per_slice: dict[str, dict[str, float]] = {}
    for metrics in tfma.load_metrics(str(out)):
        where = "".join(key.bytes_value.decode() for key in metrics.slice_key.single_slice_keys)
        per_slice[where] = {item.key.name: item.value.double_value.value for item in metrics.metric_keys_and_values
                            if item.value.HasField("double_value")}
    return rows, per_slice, out


def test_tfma_slices_on_the_attribute_and_agrees_with_the_table(evaluated) -> None:
    rows, per_slice, out = evaluated
    (table,) = read_fairness(str(out))
    assert table.attribute == "age_band" and table.threshold == THRESHOLD
    assert table.max_false_positive_rate_gap == LIMIT
    for band in (b"18-24", b"35-44", b"65+"):
        tfma_figures, group = per_slice[band.decode()], table.by_group[band.decode()]
        want = expected_group(rows, band)
        assert tfma_figures["false_positive_rate"] == pytest.approx(want["false_positive_rate"])
        assert tfma_figures["false_negative_rate"] == pytest.approx(want["false_negative_rate"])
        assert tfma_figures["average_precision"] == pytest.approx(want["average_precision"])
        assert group.false_positive_rate == pytest.approx(tfma_figures["false_positive_rate"])
        assert group.false_negative_rate == pytest.approx(tfma_figures["false_negative_rate"])
        assert group.average_precision == pytest.approx(tfma_figures["average_precision"])
        assert group.examples == int(tfma_figures["example_count"])
    overall = per_slice[""]
    assert overall["false_positive_rate_gap_age_band"] == pytest.approx(table.false_positive_rate_gap.value)
    assert overall["average_precision_gap_age_band"] == pytest.approx(table.gaps["average_precision"].value)


def test_a_gap_above_the_limit_is_refused_by_the_evaluator(evaluated) -> None:
    import tensorflow_model_analysis as tfma

    _, per_slice, out = evaluated
    assert per_slice[""]["false_positive_rate_gap_age_band"] > LIMIT
    validation = tfma.load_validation_result(str(out))
    assert not validation.validation_ok
    failures = [(failure.metric_key.name, list(per.slice_key.single_slice_keys))
                for per in validation.metric_validations_per_slice for failure in per.failures]
    assert failures == [("false_positive_rate_gap_age_band", [])]  # the overall slice only
    (table,) = read_fairness(str(out))
    assert table.gate_passed is False
    assert "age_band false-positive-rate gap" in table.gate_text() and "65+" in table.gate_text()
