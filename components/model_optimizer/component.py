"""ModelOptimizer: after the Evaluator's and the ModelValidator's blessings, before the Pusher."""
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.artifact import Artifact
from tfx.types.standard_artifacts import Examples, InfraBlessing, Model, ModelBlessing

from components.model_optimizer.executor import run_optimizer


class TFLiteModels(Artifact):
    """A folder of ``<variant>.tflite`` files, ``optimization.json`` and, when the gate passed, ``model.tflite``."""

    TYPE_NAME = "esteira.TFLiteModels"  # KFP v2 needs <namespace>.<Name> for custom types


@component
def ModelOptimizer(
    model: InputArtifact[Model],
    examples: InputArtifact[Examples],
    model_blessing: InputArtifact[ModelBlessing],
    infra_blessing: InputArtifact[InfraBlessing],
    optimized_model: OutputArtifact[TFLiteModels],
    settings: Parameter[str],
    label: Parameter[str],
    prediction_key: Parameter[str] = "probability",
) -> None:
    """Convert the blessed model's raw-feature signature to TFLite variants, measure them, gate the publish."""
    run_optimizer(model, examples, optimized_model,
                  {"the Evaluator": model_blessing, "the ModelValidator": infra_blessing},
                  settings, label, prediction_key)
