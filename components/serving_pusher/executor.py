"""Pusher executor: skip a push when the newest served version already holds this exact model, and
give each new version the training data's reference histograms before it becomes loadable.

TFX's Pusher writes a new ``<unix time>/`` version on every blessed execution, so a re-run whose
Trainer was cached re-publishes an identical model and makes model servers reload it for nothing.
Here the candidate's content digest is compared with the newest version under the push destination;
when they match, the artifact is marked ``pushed=0`` with the reason, and nothing is copied.
A new version is written into a hidden staging folder beside the versions (``.<version>.partial``, which
a server ignores: not a number) and renamed into place once complete, so a polling server never sees half
a model and a full disk or a killed Pusher leaves no partial version (the staging folder is removed, or
the next push removes it); the version holds ``assets.extra/esteira_reference_stats.json``, TF Serving's warm-up records
(``assets.extra/tf_serving_warmup_requests``, from eval rows) and, when the ModelOptimizer's gate passed,
its ``model.tflite`` added before the last step.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components.serving_pusher.reference import reference_from_statistics
from components.serving_pusher.warmup import WARMUP_PATH, warmup_logs, write_warmup_file
from errors import EsteiraError
from serving.observability.drift import REFERENCE_FILE, write_reference

REASON_KEY = "push_reason"
STATISTICS_KEY = "statistics"
REFERENCE_FEATURES_KEY = "reference_features"
TFLITE_MODEL_KEY = "tflite_model"
TFLITE_FILE = "model.tflite"  # TF Serving's name for the TFLite model in a version folder
EXAMPLES_KEY = "examples"
WARMUP_ROWS_KEY = "warmup_rows"
REFERENCE_SPLIT = "train"
WARMUP_SPLIT = "eval"
DEFAULT_WARMUP_ROWS = 8
PUSH_ADDED_FILES = (f"assets.extra/{REFERENCE_FILE}", TFLITE_FILE, WARMUP_PATH)
# TF writes fingerprint.pb on every export with per-save fields: the graph, variables and assets define the
# model, so a deterministic retrain of the same model compares equal to the version it would republish.
PER_SAVE_FILES = ("fingerprint.pb",)


def directory_digest(root: Path, ignore: tuple[str, ...] = PUSH_ADDED_FILES + PER_SAVE_FILES) -> str:
    """SHA-256 over every file's relative path and bytes, in sorted order (content, not mtimes); files the
    push itself adds and the per-save fingerprint are ignored, so a pushed version compares equal to its
    source and to a bit-identical retrain."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = str(path.relative_to(root))
        if relative in ignore:
            continue
        digest.update(relative.encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def newest_version(base_directory: Path) -> Path | None:
    """The highest numeric version folder holding a complete SavedModel, if any."""
    if not base_directory.is_dir():
        return None
    versions = [p for p in base_directory.iterdir()
                if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file()]
    return max(versions, key=lambda p: int(p.name), default=None)


class PushError(EsteiraError, RuntimeError):
    """The new version could not be written; the message names the folder, the cause and the fix."""


STAGING_SUFFIX = ".partial"


def _remove_stale_staging(base: Path) -> None:
    """Staging folders a killed Pusher left behind (never loaded by a server: their names are not numbers)."""
    if base.is_dir():
        for stale in base.glob(f".*{STAGING_SUFFIX}"):
            shutil.rmtree(stale, ignore_errors=True)
    base.mkdir(parents=True, exist_ok=True)


def _not_blessed_reason(input_dict: dict[str, list[types.Artifact]]) -> str:
    """Which gate refused the model: the Evaluator, the ModelValidator (with its reasons), or both."""
    refused = []
    for key, gate in ((standard_component_specs.MODEL_BLESSING_KEY, "the Evaluator"),
                      (standard_component_specs.INFRA_BLESSING_KEY, "the ModelValidator")):
        for blessing in input_dict.get(key) or []:
            if blessing.get_int_custom_property("blessed") != 1:
                reasons = (blessing.get_string_custom_property("reasons")
                           if blessing.has_custom_property("reasons") else "")
                refused.append(gate + (f" ({reasons})" if reasons else ""))
    return "model not blessed by " + (" nor ".join(refused) or "its validators")


class ServingPusherExecutor(tfx_pusher.Executor):
    """TFX Pusher semantics for a filesystem destination, plus idempotence and drift references."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            pushed.set_string_custom_property(REASON_KEY, _not_blessed_reason(input_dict))
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise ValueError("ServingPusher pushes to a filesystem destination only; set push_destination.filesystem")
        base = Path(destination.filesystem.base_directory)
        model_path = Path(self.GetModelPath(input_dict))

        newest = newest_version(base)
        if newest is not None and directory_digest(newest) == directory_digest(model_path):
            logging.info("Model identical to served version %s; not pushing again.", newest.name)
            self._MarkNotPushed(pushed)
            pushed.set_string_custom_property(REASON_KEY, f"identical to the served version {newest.name}")
            pushed.set_string_custom_property("pushed_version", newest.name)
            return

        version = str(int(time.time()))
        while (base / version).exists():  # two pushes within one second get distinct versions
            version = str(int(version) + 1)
        target = base / version
        staging = base / f".{version}{STAGING_SUFFIX}"
        _remove_stale_staging(base)
        try:
            shutil.copytree(model_path, staging)
            self._write_reference(input_dict, exec_properties, staging)
            tflite = self._write_tflite(input_dict, staging)
            warmup_records = self._write_warmup(input_dict, exec_properties, model_path, staging, base.name)
            os.rename(staging, target)  # atomic on one file system: the version appears whole
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise PushError(f"could not write version {version} under {base}: {error.strerror or error}; nothing "
                            "was published (the partial copy was removed). Free space on that disk (or fix its "
                            "permissions) and rerun: the components before the Pusher come from the cache") from error
        io_utils.copy_dir(str(model_path), pushed.uri)  # archive, as TFX's Pusher does
        self._MarkPushed(pushed, pushed_destination=str(target), pushed_version=version)
        pushed.set_string_custom_property(REASON_KEY, "blessed model pushed as a new version"
                                          + (f" with {TFLITE_FILE} ({tflite})" if tflite else ""))
        pushed.set_string_custom_property("tflite_variant", tflite)
        pushed.set_int_custom_property("warmup_records", warmup_records)

    def _write_warmup(self, input_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any],
                      model_path: Path, version_dir: Path, model_name: str) -> int:
        """TF Serving's warm-up file from the eval split's first rows, one record per serving signature and
        batch size (components/serving_pusher/warmup.py); a model that brings its own keeps it. Records written."""
        examples = input_dict.get(EXAMPLES_KEY)
        if not examples or (model_path / WARMUP_PATH).exists():
            return 0
        from components.model_validator.component import eval_rows

        count = int(exec_properties.get(WARMUP_ROWS_KEY) or DEFAULT_WARMUP_ROWS)
        rows = eval_rows(artifact_utils.get_single_instance(examples), WARMUP_SPLIT, count)
        logs = warmup_logs(model_path, rows, model_name)
        written = write_warmup_file(version_dir, logs)
        logging.info("Wrote %d warm-up record(s) from %d %s row(s) into %s", len(logs), len(rows), WARMUP_SPLIT,
                     written or version_dir)
        return len(logs)

    def _write_tflite(self, input_dict: dict[str, list[types.Artifact]], version_dir: Path) -> str:
        """Copy the ModelOptimizer's gated model.tflite in (atomically: a server may be polling); the variant."""
        optimized = input_dict.get(TFLITE_MODEL_KEY)
        if not optimized:
            return ""
        artifact = artifact_utils.get_single_instance(optimized)
        source = Path(artifact.uri) / TFLITE_FILE
        if artifact.get_int_custom_property("published") != 1 or not source.is_file():
            return ""
        partial = version_dir / f".{TFLITE_FILE}.partial"
        shutil.copy2(source, partial)
        os.replace(partial, version_dir / TFLITE_FILE)
        variant = artifact.get_string_custom_property("published_variant")
        logging.info("Wrote %s (%s) into %s", TFLITE_FILE, variant, version_dir)
        return variant

    def _write_reference(self, input_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any],
                         version_dir: Path) -> None:
        features = json.loads(exec_properties.get(REFERENCE_FEATURES_KEY) or "[]")
        statistics = input_dict.get(STATISTICS_KEY)
        if not statistics or not features:
            return
        stats = stats_artifact_utils.load_statistics(
            artifact_utils.get_single_instance(statistics), REFERENCE_SPLIT).proto()
        reference = reference_from_statistics(stats.datasets[0], features)
        write_reference(version_dir, reference)
        logging.info("Wrote drift reference histograms for %d feature(s) into %s", len(reference), version_dir)
