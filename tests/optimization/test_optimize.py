"""Conversion, before/after measurement and the publish gate, on a small trained model with a lookup."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from small_model import SmallModel, export_unconvertible_model

from optimization.converter import ROUTES, convert, representative_dataset
from optimization.errors import OptimizationError
from optimization.gate import Verdict, choose, judge
from optimization.optimize import REPORT_FILE, SAVED_MODEL, TFLITE_FILE, format_table, optimize, optimize_files
from optimization.settings import OptimizationSettings, Variant

FAST = {"latency_repeats": 2, "representative_examples": 20}


@pytest.fixture(scope="module")
def all_variants(small_model: SmallModel, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("variants")
    report = optimize_files(small_model.path, OptimizationSettings(**FAST), train_files=small_model.train_files,
                            eval_files=small_model.eval_files, label="label", output_dir=out)
    return report.as_dict(), out


def test_every_variant_is_converted_measured_and_recorded(all_variants) -> None:
    report, out = all_variants
    rows = {row["variant"]: row for row in report["rows"]}
    assert list(rows) == [SAVED_MODEL, *(v.value for v in Variant)]
    assert report["eval_rows"] == 300 and report["calibration_rows"] == 20
    assert rows[SAVED_MODEL]["auc"] > 0.8  # the model learned something, so AUC changes can show
    for variant in Variant:
        row = rows[variant.value]
        assert row["converted"] and row["route"] in ROUTES, row
        assert row["file_bytes"] == (out / f"{variant.value}.tflite").stat().st_size > 0
        assert 0.0 <= row["mean_abs_score_diff"] <= row["max_abs_score_diff"] <= 1.0
        for key in ("auc", "auc_pr", "recall_at_fpr", "latency_ms_1_row", "latency_ms_64_rows"):
            assert row[key] >= 0.0, (variant, key)
    assert rows["float32"]["max_abs_score_diff"] < 1e-5  # the same arithmetic, in TFLite kernels
    assert rows["float32"]["auc"] == pytest.approx(rows[SAVED_MODEL]["auc"], abs=1e-6)
    assert rows[SAVED_MODEL]["latency_ms_1_row"] > 0 and rows[SAVED_MODEL]["file_bytes"] > 0
    assert json.loads((out / REPORT_FILE).read_text()) == report


def test_gate_publishes_the_first_preferred_variant_within_the_auc_drop(all_variants) -> None:
    report, out = all_variants
    rows = {row["variant"]: row for row in report["rows"]}
    before = rows[SAVED_MODEL]["auc"]
    for variant in Variant:
        row = rows[variant.value]
        assert row["passed"] == (before - row["auc"] <= report["max_auc_drop"]), row
    expected = next(v.value for v in OptimizationSettings().publish if rows[v.value]["passed"])
    assert report["published"] == expected and expected in report["publish_reason"]
    assert (out / TFLITE_FILE).read_bytes() == (out / f"{expected}.tflite").read_bytes()
    assert f"| {expected} |" in format_table(report) and "published |" in format_table(report)


def test_nothing_is_published_when_no_variant_holds_the_auc(small_model: SmallModel, tmp_path: Path) -> None:
    """Full int8 calibrated on constant rows loses the amount feature (its quantization range is one
    point), so its AUC drops well beyond 0.01 and the gate keeps model.tflite out."""
    import tensorflow as tf

    from optimization.examples import input_specs, read_rows

    function = tf.saved_model.load(str(small_model.path)).signatures["serving_raw"]
    rows, labels = read_rows(small_model.eval_files, input_specs(function), "label")
    constant = {"amount": np.zeros(20, np.float32), "hour": np.zeros(20, np.float32),
                "kind": np.array([b"store"] * 20, dtype=object)}
    settings = OptimizationSettings(variants=["full_int8"], publish=["full_int8"], max_auc_drop=0.01,
                                    latency_repeats=1)
    report = optimize(small_model.path, settings, eval_rows=rows, labels=labels, calibration_rows=constant,
                      output_dir=tmp_path, function=function)
    before, after = report.rows[0].metrics["auc"], report.rows[1].metrics["auc"]
    assert before - after > 0.01 and report.rows[1].passed is False
    assert report.published is None and not (tmp_path / TFLITE_FILE).exists()
    assert "no variant of ['full_int8'] passed the gate" in report.publish_reason
    assert (tmp_path / "full_int8.tflite").is_file()  # measured and kept on the artifact, just not published


def test_judge_and_choose() -> None:
    assert judge(Variant.FLOAT16, 0.912, 0.910, 0.01).passed
    failed = judge(Variant.FULL_INT8, 0.912, 0.880, 0.01)
    assert not failed.passed and "drop +0.0320 > 0.01" in failed.reason
    not_converted = judge(Variant.FULL_INT8, 0.9, None, 0.01, "not converted: builtins: 'tf.X' op is neither")
    assert not not_converted.passed and not_converted.reason == "not converted: builtins: 'tf.X' op is neither"
    verdicts = [Verdict(Variant.FLOAT32, True, ""), Verdict(Variant.DYNAMIC_INT8, False, "")]
    assert choose(verdicts, [Variant.DYNAMIC_INT8, Variant.FLOAT32]).variant is Variant.FLOAT32
    assert choose(verdicts, [Variant.DYNAMIC_INT8]) is None


def test_unconvertible_variant_is_reported_with_the_converters_reason(tmp_path: Path) -> None:
    outcome = convert(export_unconvertible_model(tmp_path), "serving_raw", Variant.FLOAT32)
    assert not outcome.converted and outcome.route is None
    assert set(outcome.failures) == set(ROUTES)
    assert "'tf.UnicodeScript' op is neither a custom op nor a flex op" in outcome.failures["select_tf_ops"]


def test_empty_representative_dataset_is_refused_naming_the_fix(small_model: SmallModel, tmp_path: Path) -> None:
    with pytest.raises(OptimizationError, match=r"representative dataset for full_int8 is empty.*drop full_int8"):
        representative_dataset({"amount": np.zeros((0,), np.float32)})
    empty = tmp_path / "empty.gz"
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(empty), options="GZIP"):
        pass
    with pytest.raises(OptimizationError, match="representative dataset for full_int8 is empty"):
        optimize_files(small_model.path, OptimizationSettings(variants=["full_int8"], publish=[]),
                       train_files=[str(empty)], eval_files=small_model.eval_files, label="label",
                       output_dir=tmp_path / "out")
    assert not (tmp_path / "out" / REPORT_FILE).exists()  # refused before any conversion


@pytest.mark.parametrize(("signature", "expected"), [
    ("predict", r"no signature 'predict' \(it has \['serving_default', 'serving_raw'\]\); export a raw-feature"),
    ("serving_default", "takes serialized tf.Examples, not raw features; set optimization.signature"),
])
def test_model_without_the_raw_feature_signature_is_refused(small_model: SmallModel, tmp_path: Path,
                                                            signature: str, expected: str) -> None:
    with pytest.raises(OptimizationError, match=expected):
        optimize_files(small_model.path, OptimizationSettings(signature=signature), train_files=small_model.train_files,
                       eval_files=small_model.eval_files, label="label", output_dir=tmp_path)
