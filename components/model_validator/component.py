"""ModelValidator: TFX's InfraValidator idea without Docker, plus a weight check.

Emits an ``InfraBlessing`` (the Pusher's ``infra_blessing`` channel) whose ``blessed`` custom
property gates the push, with the reasons and measured values as further custom properties.
"""

from pathlib import Path

import tensorflow as tf
from absl import logging
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import Examples, InfraBlessing, Model
from tfx.utils import path_utils

from components.model_validator.checks import ValidationSettings, validate_model
from components.recording_trainer.executor import record_on_artifact

BLESSED_FILE, NOT_BLESSED_FILE = "INFRA_BLESSED", "INFRA_NOT_BLESSED"  # as TFX's InfraValidator writes


def eval_rows(examples: Examples, split: str, count: int) -> list[bytes]:
    """The first ``count`` serialized tf.Examples of a split (ExampleGen writes gzipped TFRecords)."""
    files = sorted(tf.io.gfile.glob(f"{artifact_utils.get_split_uri([examples], split)}/*"))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    return [record.numpy() for record in dataset]


@component
def ModelValidator(
    model: InputArtifact[Model],
    examples: InputArtifact[Examples],
    blessing: OutputArtifact[InfraBlessing],
    latency_budget_ms: Parameter[float] = 500.0,
    sample_size: Parameter[int] = 20,
    startup_timeout_s: Parameter[float] = 120.0,
    signature_tolerance: Parameter[float] = 1e-4,
    prediction_key: Parameter[str] = "probability",
    split: Parameter[str] = "eval",
) -> None:
    """Bless the model only if its weights are finite and it serves correctly and fast enough."""
    saved_model = Path(path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model)))
    settings = ValidationSettings(latency_budget_ms=latency_budget_ms, startup_timeout_s=startup_timeout_s,
                                  signature_tolerance=signature_tolerance, prediction_key=prediction_key)
    result = validate_model(saved_model, eval_rows(examples, split, sample_size), settings)
    blessing.set_int_custom_property("blessed", int(result.blessed))
    blessing.set_string_custom_property("reasons", "; ".join(result.reasons))
    blessing.set_int_custom_property("current_model_id", model.id)
    record_on_artifact(blessing, result.values, prefix="")
    Path(blessing.uri).mkdir(parents=True, exist_ok=True)
    (Path(blessing.uri) / (BLESSED_FILE if result.blessed else NOT_BLESSED_FILE)).write_text(
        "\n".join(result.reasons))
    logging.info("ModelValidator: %s %s", "blessed" if result.blessed else "NOT blessed:",
                 "; ".join(result.reasons) or result.values)
