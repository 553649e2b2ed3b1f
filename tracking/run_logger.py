"""Write a PipelineRunRecord as one MLflow run, once: a rerun with the same run key reuses the run, and one
whose logging was cut short (the server died, the process was killed) finishes that same run: every write is
idempotent (params with their values, metrics at the run's start time, artifacts by name), so nothing is
logged twice."""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tracking.curves import plot_training_curves
from tracking.errors import TrackingError
from tracking.registry import register_version
from tracking.run_record import PipelineRunRecord

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

RUN_KEY_TAG = "esteira.run_key"
PARAMS_PER_BATCH = 100  # MLflow's log_batch limits
METRICS_PER_BATCH = 1000


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    reused: bool
    model_version: str | None = None


def find_logged_run(client: MlflowClient, experiment_id: str, run_key: str) -> Run | None:
    """The finished run that already logged ``run_key``, if any."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}' and attributes.status = 'FINISHED'",
        max_results=1)
    return runs[0] if runs else None


def find_unfinished_run(client: MlflowClient, experiment_id: str, run_key: str) -> Run | None:
    """The oldest run of ``run_key`` whose logging never finished (RUNNING or FAILED), if any."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'",
                              order_by=["attributes.start_time ASC"])
    unfinished = [run for run in runs if run.info.status != "FINISHED"]
    return unfinished[0] if unfinished else None


def log_pipeline_run(client: MlflowClient, experiment_id: str, record: PipelineRunRecord) -> LoggedRun:
    """Log the record (or find it logged), then register its pushed version, if it has one."""
    from mlflow.exceptions import MlflowException

    try:
        run = find_logged_run(client, experiment_id, record.run_key)
        reused = run is not None
        if run is None:
            run = find_unfinished_run(client, experiment_id, record.run_key) or client.create_run(
                experiment_id, run_name=record.run_name, tags={**record.tags, RUN_KEY_TAG: record.run_key})
            try:
                _write(client, run.info.run_id, record, run.info.start_time)
            except BaseException:
                with contextlib.suppress(Exception):  # the server may be the thing that failed
                    client.set_terminated(run.info.run_id, "FAILED")
                raise
            client.set_terminated(run.info.run_id, "FINISHED")
        version = None
        if record.registration is not None:
            version = register_version(client, run.info.run_id, run.info.artifact_uri, record.registration)
    except MlflowException as error:
        raise TrackingError(f"MLflow refused the run of {record.run_name}: {error.message}") from None
    return LoggedRun(run_id=run.info.run_id, reused=reused, model_version=version)


def _write(client: MlflowClient, run_id: str, record: PipelineRunRecord, timestamp_ms: int) -> None:
    """Every write keyed so that writing it again changes nothing (metrics at ``timestamp_ms``, the run's start)."""
    from mlflow.entities import Metric, Param

    params = [Param(key, value[:6000]) for key, value in sorted(record.params.items())]
    for start in range(0, len(params), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=params[start:start + PARAMS_PER_BATCH])
    now = timestamp_ms
    metrics = [Metric(key, value, now, 0) for key, value in sorted(record.metrics.items())]
    metrics += [Metric(key, value, now, step) for key, points in sorted(record.metric_history.items())
                for step, value in points]
    for start in range(0, len(metrics), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + METRICS_PER_BATCH])
    for artifact_file, content in sorted(record.json_artifacts.items()):
        client.log_dict(run_id, content, artifact_file)
    for artifact_file, local in sorted(record.files.items()):
        folder = str(Path(artifact_file).parent)
        client.log_artifact(run_id, str(local), None if folder == "." else folder)
    with tempfile.TemporaryDirectory() as scratch:
        plot = plot_training_curves(record.metric_history, Path(scratch) / "training_curves.png")
        if plot is not None:
            client.log_artifact(run_id, str(plot))
