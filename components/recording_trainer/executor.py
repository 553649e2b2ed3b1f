"""TFX's GenericExecutor plus: the run_fn's training record becomes Model artifact properties.

Seeds, the privacy budget spent (epsilon at delta), the distribution strategy and the epochs
actually run are facts about the model that audits and compliance reports need; keeping them on
the Model artifact in MLMD ties them to the model's lineage instead of to a log file.
"""
from __future__ import annotations

from typing import Any

from absl import logging
from tfx import types
from tfx.components.trainer import executor as tfx_trainer
from tfx.types import artifact_utils, standard_component_specs

from models.common.training_record import read_training_record

PROPERTY_PREFIX = "training_"


def record_on_artifact(artifact: types.Artifact, record: dict[str, Any], prefix: str = PROPERTY_PREFIX) -> None:
    """Each value as a typed custom property named ``<prefix><key>`` (booleans as 0/1)."""
    for key, value in sorted(record.items()):
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            artifact.set_int_custom_property(name, int(value))
        elif isinstance(value, int):
            artifact.set_int_custom_property(name, value)
        elif isinstance(value, float):
            artifact.set_float_custom_property(name, value)
        else:
            artifact.set_string_custom_property(name, str(value))


class RecordingTrainerExecutor(tfx_trainer.GenericExecutor):
    """Runs run_fn as TFX does, then copies its training record onto the Model artifact."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        model_run = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_RUN_KEY])
        record = read_training_record(model_run.uri)
        if not record:
            logging.warning("run_fn wrote no training record in %s; the Model artifact carries none", model_run.uri)
        record_on_artifact(model, record)
