"""MlflowLogger: reads what the run produced (data, schema, anomalies, model, evaluation, push) and
hands it to tracking/; it runs whether or not the Pusher published, so failed gates are logged too."""
from __future__ import annotations

import json
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.mlflow_logger.executor import MlflowLoggerExecutor


class MlflowLoggerSpec(ComponentSpec):
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_run": ChannelParameter(type=standard_artifacts.ModelRun),
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "pushed_model": ChannelParameter(type=standard_artifacts.PushedModel),
    }
    OUTPUTS: dict[str, Any] = {}
    PARAMETERS = {
        "config": ExecutionParameter(type=str),  # the use case's full config, as JSON
        "model_name": ExecutionParameter(type=str),
        "experiment": ExecutionParameter(type=str),
        "tracking_uri": ExecutionParameter(type=str, optional=True),
        "local_store": ExecutionParameter(type=str),
        "required": ExecutionParameter(type=int),
        "metadata_path": ExecutionParameter(type=str, optional=True),
    }


class MlflowLogger(base_component.BaseComponent):
    """Logs the pipeline run to MLflow and writes the MLflow run id back onto the PushedModel in MLMD."""

    SPEC_CLASS = MlflowLoggerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(MlflowLoggerExecutor)

    def __init__(self, *, examples: types.BaseChannel, schema: types.BaseChannel, anomalies: types.BaseChannel,
                 model: types.BaseChannel, model_run: types.BaseChannel, evaluation: types.BaseChannel,
                 blessing: types.BaseChannel, pushed_model: types.BaseChannel, config: dict[str, Any],
                 model_name: str, experiment: str, tracking_uri: str | None, local_store: str, required: bool,
                 metadata_path: str | None = None) -> None:
        spec = MlflowLoggerSpec(
            examples=examples, schema=schema, anomalies=anomalies, model=model, model_run=model_run,
            evaluation=evaluation, blessing=blessing, pushed_model=pushed_model,
            config=json.dumps(config, sort_keys=True), model_name=model_name, experiment=experiment,
            tracking_uri=tracking_uri or "", local_store=local_store, required=int(required),
            metadata_path=metadata_path or "")
        super().__init__(spec=spec)
