"""MlflowLogger executor: build the run record, log it, write the MLflow run id back into MLMD.

It runs after the Pusher, so a tracking failure never loses a pushed model: with
``tracking.required`` it fails the run with one line naming the URI and the fix; otherwise it warns.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.mlflow_logger.facts import MLFLOW_RUN_ID_PROPERTY, MLFLOW_TRACKING_URI_PROPERTY, build_record
from tracking.errors import TrackingError
from tracking.run_logger import log_pipeline_run
from tracking.store import connect, experiment_id, resolve_target


def write_back_run_id(metadata_path: str, artifact_id: int, run_id: str, tracking_uri: str) -> None:
    """Put the MLflow run id on the PushedModel in MLMD, so lineage leads to MLflow and back."""
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    store = mlmd.MetadataStore(connection)
    [artifact] = store.get_artifacts_by_id([artifact_id])
    artifact.custom_properties[MLFLOW_RUN_ID_PROPERTY].string_value = run_id
    artifact.custom_properties[MLFLOW_TRACKING_URI_PROPERTY].string_value = tracking_uri
    store.put_artifacts([artifact])


class MlflowLoggerExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        artifacts = {key: artifact_utils.get_single_instance(value) for key, value in input_dict.items()}
        target = resolve_target(exec_properties.get("tracking_uri") or None, Path(exec_properties["local_store"]))
        run_id = self._context.pipeline_run_id if self._context else None
        try:
            record = build_record(artifacts, json.loads(exec_properties["config"]), exec_properties["model_name"],
                                  run_id)
            client = connect(target)
            logged = log_pipeline_run(client, experiment_id(client, target, exec_properties["experiment"]), record)
        except TrackingError as error:
            if int(exec_properties["required"]):
                raise
            logging.warning("esteira: run not logged to MLflow (tracking.required is false): %s", error)
            return
        logging.info("esteira: MLflow run %s %s in %s%s", logged.run_id,
                     "already held this run" if logged.reused else "logged", target.uri,
                     f"; registered version {logged.model_version}" if logged.model_version else "")
        metadata_path = exec_properties.get("metadata_path") or ""
        if not Path(metadata_path).is_file():
            logging.warning("esteira: no sqlite MLMD store at %r; the run id is not written back", metadata_path)
        else:
            write_back_run_id(metadata_path, artifacts["pushed_model"].id, logged.run_id,
                              target.uri)
