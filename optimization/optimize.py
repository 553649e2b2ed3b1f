"""Build every configured TFLite variant of a SavedModel, measure each against it, and gate the publish.

Writes into ``output_dir``: ``<variant>.tflite`` for each converted variant, ``model.tflite`` (the
published one, TF Serving's file name) only when a variant passed the gate, and ``optimization.json``
with the before/after table, the routes, the failures and the verdicts.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optimization import measure
from optimization.converter import convert, representative_dataset
from optimization.errors import OptimizationError
from optimization.examples import input_specs, raw_signature, read_rows, row_count
from optimization.gate import choose, judge
from optimization.settings import OptimizationSettings, Variant

TFLITE_FILE = "model.tflite"  # the name TF Serving's --prefer_tflite_model looks for in a version folder
REPORT_FILE = "optimization.json"
SAVED_MODEL = "saved_model"


@dataclass
class VariantResult:
    """One row of the before/after table (the SavedModel's own row has variant ``saved_model``)."""

    variant: str
    converted: bool = True
    route: str | None = None
    failure: str = ""
    file_bytes: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    passed: bool | None = None
    verdict: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "converted": self.converted, "route": self.route, "failure": self.failure,
                "file_bytes": self.file_bytes, **self.metrics, "passed": self.passed, "verdict": self.verdict}


@dataclass
class OptimizationReport:
    signature: str
    eval_rows: int
    calibration_rows: int
    max_auc_drop: float
    false_positive_rate: float
    rows: list[VariantResult]
    published: str | None
    publish_reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "eval_rows": self.eval_rows, "calibration_rows": self.calibration_rows,
                "max_auc_drop": self.max_auc_drop, "false_positive_rate": self.false_positive_rate,
                "published": self.published, "publish_reason": self.publish_reason,
                "rows": [row.as_dict() for row in self.rows]}

    def write(self, output_dir: Path) -> Path:
        path = output_dir / REPORT_FILE
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        return path


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def load_signature(saved_model_dir: Path, signature: str) -> tuple[Any, Any]:
    """The loaded SavedModel (kept alive by the caller) and its raw-feature signature."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))
    return loaded, raw_signature(loaded, signature)


def output_key(function: Any, prediction_key: str) -> str:
    outputs = sorted(function.structured_outputs)
    if prediction_key in outputs:
        return prediction_key
    if len(outputs) == 1:
        return outputs[0]
    raise OptimizationError(
        f"the signature has outputs {outputs} and none is {prediction_key!r}; pass the score output's name")


def optimize_files(saved_model_dir: Path, settings: OptimizationSettings, *, train_files: Sequence[str],
                   eval_files: Sequence[str], label: str, output_dir: Path,
                   prediction_key: str = "probability") -> OptimizationReport:
    """Read the eval rows (and full_int8's calibration rows from train) the signature needs, then optimize."""
    loaded, function = load_signature(saved_model_dir, settings.signature)
    specs = input_specs(function)
    eval_rows, labels = read_rows(eval_files, specs, label, limit=settings.eval_rows)
    assert labels is not None  # read_rows returns labels whenever it is given a label key
    calibration: dict[str, np.ndarray] = {}
    if Variant.FULL_INT8 in settings.variants:
        calibration, _ = read_rows(train_files, specs, limit=settings.representative_examples)
    report = optimize(saved_model_dir, settings, eval_rows=eval_rows, labels=labels, calibration_rows=calibration,
                      output_dir=output_dir, prediction_key=prediction_key, function=function)
    del loaded
    return report


def optimize(saved_model_dir: Path, settings: OptimizationSettings, *, eval_rows: Mapping[str, np.ndarray],
             labels: np.ndarray, calibration_rows: Mapping[str, np.ndarray], output_dir: Path,
             prediction_key: str = "probability", function: Any = None) -> OptimizationReport:
    """Convert, score the same rows with the SavedModel and each variant, time them interleaved, gate."""
    saved_model_dir, output_dir = Path(saved_model_dir), Path(output_dir)
    loaded = None
    if function is None:
        loaded, function = load_signature(saved_model_dir, settings.signature)
    if row_count(eval_rows) == 0:
        raise OptimizationError("no eval rows to measure on; check the eval split of the examples")
    if Variant.FULL_INT8 in settings.variants:
        representative_dataset(calibration_rows)  # refuses an empty one before any conversion runs
    output = output_key(function, prediction_key)
    output_dir.mkdir(parents=True, exist_ok=True)

    baseline_predict = measure.saved_model_predict(function, output)
    baseline_scores = measure.score_all(baseline_predict, eval_rows)
    baseline = VariantResult(SAVED_MODEL, route="tensorflow", file_bytes=directory_bytes(saved_model_dir),
                             metrics=measure.quality(labels, baseline_scores, settings.false_positive_rate).as_dict())
    rows, scorers = [baseline], {SAVED_MODEL: baseline_predict}
    verdicts = []
    for variant in settings.variants:
        conversion = convert(saved_model_dir, settings.signature, variant, calibration_rows)
        if not conversion.converted:
            row = VariantResult(variant.value, converted=False, failure=f"not converted: {conversion.reason}")
        else:
            (output_dir / f"{variant.value}.tflite").write_bytes(conversion.model)  # type: ignore[arg-type]
            row = VariantResult(variant.value, route=conversion.route, file_bytes=len(conversion.model))  # type: ignore[arg-type]
            try:
                predict = measure.tflite_predict(conversion.model, settings.signature, output)  # type: ignore[arg-type]
                scores = measure.score_all(predict, eval_rows)
            except Exception as exc:  # noqa: BLE001 - e.g. select TF ops without a Flex delegate: reported, not hidden
                row.failure = f"converted ({conversion.route}) but the TFLite interpreter cannot run it: {exc}"
            else:
                row.metrics = {**measure.quality(labels, scores, settings.false_positive_rate).as_dict(),
                               **measure.score_differences(baseline_scores, scores)}
                scorers[variant.value] = predict
        verdict = judge(variant, baseline.metrics["auc"], row.metrics.get("auc"), settings.max_auc_drop,
                        row.failure)
        row.passed, row.verdict = verdict.passed, verdict.reason
        verdicts.append(verdict)
        rows.append(row)

    latency = measure.interleaved_latency(scorers, eval_rows, settings.latency_repeats)
    for row in rows:
        row.metrics.update(latency.get(row.variant, {}))

    chosen = choose(verdicts, settings.publish)
    if chosen is not None:
        (output_dir / TFLITE_FILE).write_bytes((output_dir / f"{chosen.variant.value}.tflite").read_bytes())
        reason = f"published {chosen.variant.value}: {chosen.reason}"
    elif not settings.publish:
        reason = "optimization.publish is empty: variants measured, none published"
    else:
        reason = (f"no variant of {[v.value for v in settings.publish]} passed the gate "
                  f"(max AUC drop {settings.max_auc_drop:g}); the SavedModel is served alone")
    report = OptimizationReport(
        signature=settings.signature, eval_rows=row_count(eval_rows), calibration_rows=row_count(calibration_rows),
        max_auc_drop=settings.max_auc_drop, false_positive_rate=settings.false_positive_rate, rows=rows,
        published=chosen.variant.value if chosen else None, publish_reason=reason)
    report.write(output_dir)
    del loaded
    return report


def format_table(report: Mapping[str, Any]) -> str:
    """The before/after table as Markdown (README, benchmarks, run report)."""
    lines = ["| variant | route | size (KiB) | AUC | AUC-PR | recall@FPR | max abs diff | mean abs diff "
             "| 1-row ms | 64-row ms | gate |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]

    def number(row: Mapping[str, Any], key: str, digits: int = 4) -> str:
        value = row.get(key)
        return "—" if value is None else f"{value:.{digits}f}"

    for row in report["rows"]:
        size = "—" if row.get("file_bytes") is None else f"{row['file_bytes'] / 1024:.1f}"
        gate = ("baseline" if row["variant"] == SAVED_MODEL else
                "published" if row["variant"] == report.get("published") else
                "pass" if row.get("passed") else "not converted" if not row.get("converted") else
                "not runnable" if row.get("failure") else "fail")
        lines.append(
            f"| {row['variant']} | {row.get('route') or '—'} | {size} | {number(row, 'auc')} | "
            f"{number(row, 'auc_pr')} | {number(row, 'recall_at_fpr')} | {number(row, 'max_abs_score_diff', 6)} | "
            f"{number(row, 'mean_abs_score_diff', 6)} | {number(row, 'latency_ms_1_row', 3)} | "
            f"{number(row, 'latency_ms_64_rows', 3)} | {gate} |")
    return "\n".join(lines)
