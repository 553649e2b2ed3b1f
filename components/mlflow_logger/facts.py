"""Facts of one pipeline run read from its TFX artifacts, as a tracking.PipelineRunRecord.

The artifacts are read through evidence/ (TFMA results, the data gate's anomalies, the training and push
records); this module names them as MLflow params, metrics, tags and files; what MLflow does with the
facts is tracking/'s.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tfx import types

from evidence import evaluation, records
from tracking.run_record import (
    PipelineRunRecord,
    Registration,
    config_sha256,
    flatten,
    git_commit,
    metric_name,
    package_versions,
)
from tracking.tensorboard_history import epoch_scalars

MLFLOW_RUN_ID_PROPERTY = "mlflow_run_id"
MLFLOW_TRACKING_URI_PROPERTY = "mlflow_tracking_uri"


def gate_failures(uri: str) -> list[dict[str, Any]]:
    """Each failed threshold with its metric, value and slice, from TFMA's validation result."""
    from google.protobuf import json_format

    return [{"slice": failure.slice_name, "metric": failure.metric + (" (change)" if failure.is_diff else ""),
             "value": failure.value, "threshold": json_format.MessageToDict(failure.threshold)}
            for failure in evaluation.validation_failures(uri)]


def gate_thresholds(uri: str) -> dict[str, float]:
    """'gate.auc.lower_bound' → 0.95, 'gate.auc.change_absolute' → -0.01, from the eval config TFMA saved."""
    gates: dict[str, float] = {}
    for name, threshold in evaluation.saved_thresholds(evaluation.saved_eval_config(uri)):
        value, change = threshold.value_threshold, threshold.change_threshold
        if value.HasField("lower_bound"):
            gates[metric_name("gate", name, "lower_bound")] = value.lower_bound.value
        if value.HasField("upper_bound"):
            gates[metric_name("gate", name, "upper_bound")] = value.upper_bound.value
        if change.HasField("absolute"):
            gates[metric_name("gate", name, "change_absolute")] = change.absolute.value
        if change.HasField("relative"):
            gates[metric_name("gate", name, "change_relative")] = change.relative.value
    return gates


def build_record(artifacts: dict[str, types.Artifact], config: dict[str, Any], model_name: str,
                 pipeline_run_id: str | None) -> PipelineRunRecord:
    examples, model, blessing, pushed = (artifacts[k] for k in ("examples", "model", "blessing", "pushed_model"))
    config_hash = config_sha256(config)
    pipeline_name = config.get("pipeline", {}).get("name", "pipeline")
    blessed = records.blessed(blessing.mlmd_artifact)
    # The same trained model with the same verdict is the same MLflow run, even when a rerun
    # evaluates it again (the second run has itself as its baseline, so the Evaluator is not cached).
    run_key = hashlib.sha256(
        f"{pipeline_name}|{examples.id}|{model.id}|{int(blessed)}|{config_hash}".encode()).hexdigest()

    params = flatten(config, "config.")
    params["config_sha256"] = config_hash
    # dvc_*: the DVC version of the input folder (privacy/data_version.py), so a run names its exact data
    for name in ("input_sha256", "input_fingerprint", "span", "version", "dvc_md5", "dvc_path",
                 "dvc_matches_working_copy"):
        value = records.value(examples.mlmd_artifact.custom_properties, name)
        if value is not None:
            params[f"data.{name}"] = str(value)
    record = records.training_record(model.mlmd_artifact)
    params.update({f"training_record.{key}": str(value) for key, value in record.items()})
    params.update({f"package.{name}": version for name, version in package_versions().items()})

    metrics: dict[str, float] = {f"training.{key}": float(value) for key, value in record.items()
                                 if isinstance(value, (int, float)) and not isinstance(value, bool)}
    evaluation_uri = artifacts["evaluation"].uri
    found = evaluation.evaluation_metrics(evaluation_uri)
    for role, prefix in (("candidate", "eval"), ("baseline", "baseline"), ("diff", "eval_diff")):
        for where, values in found[role].items():
            for name, value in values.items():
                metrics[metric_name(prefix, f"slice.{where}" if where else "", name)] = value
    metrics.update(gate_thresholds(evaluation_uri))

    failures = gate_failures(evaluation_uri)
    reason = "all gates passed" if blessed else ("; ".join(
        f"{f['metric']} {f['value']:.4f} failed {json.dumps(f['threshold'], sort_keys=True)} ({f['slice']})"
        for f in failures) or "the Evaluator did not bless the model")
    push = records.PushRecord.of(pushed.mlmd_artifact)
    tags = {
        "pipeline_name": pipeline_name, "pipeline_run_id": pipeline_run_id or "",
        "mlmd.examples_id": str(examples.id), "mlmd.model_id": str(model.id),
        "mlmd.blessing_id": str(blessing.id), "mlmd.pushed_model_id": str(pushed.id),
        "blessed": "yes" if blessed else "no", "blessed_reason": reason[:5000],
        "pushed": "yes" if push.pushed else "no", "push_reason": push.reason,
        "serving_model_name": model_name, "serving_version": push.version,
        "tensorboard_logdir": artifacts["model_run"].uri,
    }
    commit = git_commit(Path.cwd())
    if commit:
        tags["git_commit"] = commit
    schema_file = Path(artifacts["schema"].uri) / "schema.pbtxt"
    registration = None
    if push.pushed and push.version:
        registration = Registration(model_name, push.version, Path(push.destination))
    return PipelineRunRecord(
        run_key=run_key, run_name=f"{pipeline_name} {pipeline_run_id or ''}".strip(),
        params=params, metrics=metrics, metric_history=epoch_scalars(Path(artifacts["model_run"].uri)),
        tags=tags, files={"schema/schema.pbtxt": schema_file} if schema_file.is_file() else {},
        json_artifacts={
            "evaluation/metrics.json": found,
            "evaluation/gate.json": {"blessed": blessed, "reason": reason, "failures": failures,
                                     "thresholds": gate_thresholds(evaluation_uri)},
            "data/anomalies_summary.json": records.anomalies_summary(artifacts["anomalies"].uri),
            "tensorboard.json": {"logdir": artifacts["model_run"].uri,
                                 "open_with": f"tensorboard --logdir {artifacts['model_run'].uri}"},
        },
        registration=registration)
