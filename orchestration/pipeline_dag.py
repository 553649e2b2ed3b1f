"""The pipeline of a use case as an Airflow DAG: one task per TFX component, through TFX's AirflowDagRunner.

A use case whose data arrives in daily spans (a time split) is scheduled daily, so each day's run reads the
span that day brought; others run when triggered. One run at a time, because runs share the MLMD store and
the latest blessed baseline. A gate that refuses fails its task, and the gate's reason is the exception in
that task's log.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import UseCaseConfig, load_config

if TYPE_CHECKING:
    from airflow.models import DAG

ROOT = Path(__file__).resolve().parent.parent
CONFIGS_ENV = "ESTEIRA_AIRFLOW_CONFIGS"   # use-case YAMLs, separated by ':' (default: the breast-cancer one)
HOME_ENV = "ESTEIRA_HOME"                 # the folder the configs' relative paths resolve against
RETRIES_ENV = "ESTEIRA_AIRFLOW_RETRIES"
DEFAULT_CONFIGS = ("configs/breast_cancer.yaml",)
DEFAULT_RETRIES = 1
START_DATE = datetime(2026, 1, 1)


def schedule_of(config: UseCaseConfig) -> str | None:
    """Daily for data that arrives as one span a day (a time split); otherwise only when triggered."""
    return "@daily" if config.data.time_split is not None else None


def dag_settings(config: UseCaseConfig, retries: int = DEFAULT_RETRIES) -> dict[str, Any]:
    """The Airflow DAG arguments: schedule, no backfill of missed days, one run at a time, retries."""
    return {
        "schedule": schedule_of(config),
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "default_args": {"owner": "esteira", "retries": retries, "retry_delay": timedelta(minutes=2)},
        "tags": ["esteira", "pipeline"],
        "description": f"Esteira pipeline {config.pipeline.name} ({config.serving.model_name})",
    }


def build_dag(config: UseCaseConfig, retries: int = DEFAULT_RETRIES) -> DAG:
    """The use case's TFX pipeline (pipeline.dag.create_pipeline) as an Airflow DAG named after it."""
    from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

    from pipeline.dag import create_pipeline
    from pipeline.runners import prepare_devices

    prepare_devices(config)
    runner = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=dag_settings(config, retries)))
    return runner.run(create_pipeline(config))


def configured_paths(environ: dict[str, str] | None = None) -> tuple[Path, list[Path]]:
    """The base folder and the config files the DAGs folder builds DAGs for, from the environment."""
    environ = dict(os.environ) if environ is None else environ
    home = Path(environ.get(HOME_ENV) or ROOT).resolve()
    names = [name for name in environ.get(CONFIGS_ENV, ":".join(DEFAULT_CONFIGS)).split(":") if name]
    return home, [path if path.is_absolute() else home / path for path in map(Path, names)]


def retries_from(environ: dict[str, str]) -> int:
    text = environ.get(RETRIES_ENV, str(DEFAULT_RETRIES))
    if not text.isdigit():
        raise ValueError(f"{RETRIES_ENV}={text!r}: expected a whole number of retries per task, e.g. 1")
    return int(text)


def dags_from_environment(environ: dict[str, str] | None = None) -> dict[str, DAG]:
    """One DAG per configured use case, keyed by DAG id (the pipeline name), for a DAG file's globals."""
    environ = dict(os.environ) if environ is None else environ
    home, paths = configured_paths(environ)
    retries = retries_from(environ)
    dags: dict[str, DAG] = {}
    for path in paths:
        dag = build_dag(load_config(path, base=home), retries)
        if dag.dag_id in dags:
            raise ValueError(f"{path}: pipeline name {dag.dag_id!r} is already the DAG of another config in "
                             f"{CONFIGS_ENV}; give each use case its own pipeline.name")
        dags[dag.dag_id] = dag
    return dags
