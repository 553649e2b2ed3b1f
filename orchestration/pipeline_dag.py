"""The pipeline of a use case as an Airflow DAG: one task per TFX component, each launched by the node
launcher TFX's LocalDagRunner uses, so an Airflow run writes MLMD and outputs exactly as ``esteira run`` does.

Why not TFX's AirflowDagRunner: it runs components through TFX's older launcher, which records a run in an
older MLMD layout (per-component run contexts and execution properties, no ``pipeline_run`` and ``node``
contexts), so the run report, lineage, the LGPD report and the console would not find an Airflow-run model.
Here the pipeline is compiled to TFX's IR as LocalDagRunner compiles it, each task launches its node with
``tfx.orchestration.portable.launcher.Launcher``, and the Airflow run id is the TFX pipeline run id.

A use case whose data arrives in daily spans (a time split) is scheduled daily, and the run for a day reads
the span dated that day (orchestration/daily_span.py), never "the latest"; others run when triggered. One
run at a time, because runs share the MLMD store and the latest blessed baseline. A gate that refuses fails
its task, and the gate's reason is the exception in that task's log.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import functools
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.daily_span import config_for_day
from pipeline.config import UseCaseConfig, load_config

if TYPE_CHECKING:
    from airflow.models import DAG
    from tfx.proto.orchestration import pipeline_pb2

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS_ENV = "ESTEIRA_AIRFLOW_CONFIGS"   # use-case YAMLs, separated by ':' (default: the breast-cancer one)
HOME_ENV = "ESTEIRA_HOME"                 # the folder the configs' relative paths resolve against
RETRIES_ENV = "ESTEIRA_AIRFLOW_RETRIES"
DEFAULT_CONFIGS = ("configs/breast_cancer.yaml",)
DEFAULT_RETRIES = 1
# Early, so a run can be made for any day the data holds (`airflow dags test <dag> <day>`, a backfill): Airflow
# creates no task for a logical date before the DAG's start; catchup=False keeps the scheduler to the latest day.
START_DATE = datetime(2000, 1, 1)

_COMPILED: dict[str, bytes] = {}  # config JSON -> serialized IR: the tasks of one process compile once per config


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


def compile_pipeline(config: UseCaseConfig) -> pipeline_pb2.Pipeline:
    """The use case's pipeline in TFX's IR, compiled as LocalDagRunner compiles it (a fresh copy each call)."""
    from tfx.orchestration.portable.tfx_runner import _make_pipeline_proto
    from tfx.proto.orchestration import pipeline_pb2

    from pipeline.dag import create_pipeline

    key = config.model_dump_json()
    if key not in _COMPILED:
        _COMPILED[key] = _make_pipeline_proto(create_pipeline(config)).SerializeToString()
    return pipeline_pb2.Pipeline.FromString(_COMPILED[key])


def launch_node(config: UseCaseConfig, node_id: str, run_id: str) -> None:
    """Run one node of the pipeline within the TFX run ``run_id``, as LocalDagRunner runs each of its nodes."""
    from tfx.dsl.compiler import constants
    from tfx.orchestration import metadata
    from tfx.orchestration.local import runner_utils
    from tfx.orchestration.portable import launcher, runtime_parameter_utils

    from pipeline.runners import prepare_devices

    prepare_devices(config)
    ir = compile_pipeline(config)
    runtime_parameter_utils.substitute_runtime_parameter(ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    nodes = {node.pipeline_node.node_info.id: node.pipeline_node for node in ir.nodes}
    if node_id not in nodes:
        raise ValueError(f"{node_id!r} is not a node of pipeline {config.pipeline.name} (nodes: {', '.join(nodes)}); "
                         "the DAG file and the config disagree: let Airflow parse the DAG again")
    deployment = runner_utils.extract_local_deployment_config(ir)
    connection = deployment.metadata_connection_config
    launcher.Launcher(
        pipeline_node=nodes[node_id],
        mlmd_connection=metadata.Metadata(getattr(connection, connection.WhichOneof("connection_config"))),
        pipeline_info=ir.pipeline_info, pipeline_runtime_spec=ir.runtime_spec,
        executor_spec=runner_utils.extract_executor_spec(deployment, node_id),
        custom_driver_spec=runner_utils.extract_custom_driver_spec(deployment, node_id)).launch()


def run_task(config: UseCaseConfig, node_id: str, **context: Any) -> None:
    """An Airflow task: the node, within the TFX run named by the Airflow run id, on the run's day's span."""
    day = context["logical_date"].date()
    day_config = config_for_day(config, day)
    if day_config.data.time_split is not None:
        log.info("run %s for %s reads span %s", context["run_id"], day, day_config.data.time_split.end_span)
    launch_node(day_config, node_id, context["run_id"])


def build_dag(config: UseCaseConfig, retries: int = DEFAULT_RETRIES) -> DAG:
    """The use case's TFX pipeline (pipeline.dag.create_pipeline) as an Airflow DAG named after it: a
    PythonOperator per node, wired as the IR's upstream nodes say."""
    from airflow.models import DAG
    from airflow.operators.python import PythonOperator

    ir = compile_pipeline(config)
    dag = DAG(dag_id=config.pipeline.name, **dag_settings(config, retries))
    tasks: dict[str, PythonOperator] = {}
    for node in ir.nodes:  # topological order
        node_id = node.pipeline_node.node_info.id
        tasks[node_id] = PythonOperator(task_id=node_id, dag=dag,
                                        python_callable=functools.partial(run_task, config, node_id))
        for upstream in node.pipeline_node.upstream_nodes:
            tasks[upstream] >> tasks[node_id]
    return dag


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
