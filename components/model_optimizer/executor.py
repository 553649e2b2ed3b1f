"""The ModelOptimizer's work on TFX artifacts: read the blessings and splits, run the optimization
library, and record the verdict on the output artifact for the Pusher and the run report.

Runs before the Pusher, which copies the published ``model.tflite`` into the new version folder before
``saved_model.pb`` (the file that makes a version loadable). Writing it next to an already pushed
version instead would race model servers: one that has loaded the version keeps serving the
SavedModel and never sees the TFLite file (versions are not reloaded), so the same version number
would answer differently on two servers.
"""
from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.types import artifact_utils
from tfx.utils import path_utils

from optimization.optimize import TFLITE_FILE, optimize_files
from optimization.settings import OptimizationSettings

PUBLISHED = "published"
PUBLISHED_VARIANT = "published_variant"
REASON = "publish_reason"
REPORT = "optimization_report"


def split_files(examples: types.Artifact, split: str) -> list[str]:
    return sorted(tf.io.gfile.glob(f"{artifact_utils.get_split_uri([examples], split)}/*"))


def not_blessed(blessings: dict[str, types.Artifact | None]) -> list[str]:
    """The gates (by name) whose blessing is present and says no."""
    return [name for name, blessing in blessings.items()
            if blessing is not None and blessing.get_int_custom_property("blessed") != 1]


def run_optimizer(model: types.Artifact, examples: types.Artifact, output: types.Artifact,
                  blessings: dict[str, types.Artifact | None], settings_json: str, label: str,
                  prediction_key: str) -> None:
    """Optimize a blessed model into ``output.uri``; an unblessed one is recorded as not optimized."""
    settings = OptimizationSettings.model_validate_json(settings_json)
    out = Path(output.uri)
    out.mkdir(parents=True, exist_ok=True)
    refused = not_blessed(blessings)
    if refused:
        output.set_int_custom_property(PUBLISHED, 0)
        output.set_string_custom_property(REASON, f"not optimized: model not blessed by {' nor '.join(refused)}")
        logging.info("ModelOptimizer: model not blessed by %s; nothing converted", refused)
        return
    saved_model = Path(path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model)))
    report = optimize_files(saved_model, settings, train_files=split_files(examples, "train"),
                            eval_files=split_files(examples, "eval"), label=label, output_dir=out,
                            prediction_key=prediction_key)
    published = report.published is not None and (out / TFLITE_FILE).is_file()
    output.set_int_custom_property(PUBLISHED, int(published))
    output.set_string_custom_property(PUBLISHED_VARIANT, report.published or "")
    output.set_string_custom_property(REASON, report.publish_reason)
    output.set_string_custom_property(REPORT, json.dumps(report.as_dict()))
    for row in report.rows:
        if "auc" in row.metrics:
            output.set_float_custom_property(f"{row.variant}_auc", row.metrics["auc"])
    logging.info("ModelOptimizer: %s", report.publish_reason)
