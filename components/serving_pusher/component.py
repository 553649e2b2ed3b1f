"""ServingPusher: TFX's Pusher plus the training data's reference histograms inside each version."""
from __future__ import annotations

import json

from tfx import types
from tfx.components.pusher.component import Pusher
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.types.standard_component_specs import PusherSpec

from components.model_optimizer.component import TFLiteModels
from components.serving_pusher.executor import (
    EXAMPLES_KEY,
    REFERENCE_FEATURES_KEY,
    STATISTICS_KEY,
    TFLITE_MODEL_KEY,
    WARMUP_ROWS_KEY,
    ServingPusherExecutor,
)


class ServingPusherSpec(PusherSpec):
    INPUTS = {**PusherSpec.INPUTS,
              STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
              TFLITE_MODEL_KEY: ChannelParameter(type=TFLiteModels, optional=True),
              EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True)}
    PARAMETERS = {**PusherSpec.PARAMETERS, REFERENCE_FEATURES_KEY: ExecutionParameter(type=str, optional=True),
                  WARMUP_ROWS_KEY: ExecutionParameter(type=int, optional=True)}


class ServingPusher(Pusher):
    """Pushes a model blessed by the Evaluator (and by the ModelValidator when ``infra_blessing`` is
    given) as a new version, never the same model twice; with ``statistics``,
    writes ``assets.extra/esteira_reference_stats.json`` for ``reference_features`` before the
    version becomes loadable (saved_model.pb is still copied last); with ``tflite_model``, the
    ModelOptimizer's gated ``model.tflite`` joins the version the same way; with ``examples``, TF Serving's
    warm-up records (``assets.extra/tf_serving_warmup_requests``) from the first ``warmup_rows`` eval rows."""

    SPEC_CLASS = ServingPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(ServingPusherExecutor)

    def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel,
                 push_destination: pusher_pb2.PushDestination,
                 statistics: types.BaseChannel | None = None, reference_features: list[str] | None = None,
                 infra_blessing: types.BaseChannel | None = None,
                 tflite_model: types.BaseChannel | None = None, examples: types.BaseChannel | None = None,
                 warmup_rows: int | None = None) -> None:
        spec = ServingPusherSpec(
            model=model, model_blessing=model_blessing, infra_blessing=infra_blessing,
            push_destination=push_destination,
            custom_config=json.dumps(None), statistics=statistics, tflite_model=tflite_model,
            examples=examples, warmup_rows=warmup_rows,
            reference_features=json.dumps(sorted(reference_features or [])),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel))
        base_component.BaseComponent.__init__(self, spec=spec)
