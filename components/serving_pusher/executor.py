"""Pusher executor that skips a push when the newest served version already holds this exact model.

TFX's Pusher writes a new ``<unix time>/`` version on every blessed execution, so a re-run whose
Trainer was cached re-publishes an identical model and makes model servers reload it for nothing.
Here the candidate's content digest is compared with the newest version under the push destination;
when they match, the artifact is marked ``pushed=0`` with the reason, and nothing is copied.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

REASON_KEY = "push_reason"


def directory_digest(root: Path) -> str:
    """SHA-256 over every file's relative path and bytes, in sorted order (content, not mtimes)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
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


class IdempotentPusherExecutor(tfx_pusher.Executor):
    """TFX Pusher semantics, plus: an identical newest version means no new push."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            pushed.set_string_custom_property(REASON_KEY, "model not blessed by the Evaluator")
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                                  destination)
        newest = newest_version(Path(destination.filesystem.base_directory))
        if newest is not None:
            model_digest = directory_digest(Path(self.GetModelPath(input_dict)))
            if directory_digest(newest) == model_digest:
                logging.info("Model identical to served version %s; not pushing again.", newest.name)
                self._MarkNotPushed(pushed)
                pushed.set_string_custom_property(
                    REASON_KEY, f"identical to the served version {newest.name}")
                pushed.set_string_custom_property("pushed_version", newest.name)
                return
        super().Do(input_dict, output_dict, exec_properties)
        pushed.set_string_custom_property(REASON_KEY, "blessed model pushed as a new version")
