"""The breast-cancer pipeline as an Airflow DAG (TFX's AirflowDagRunner) under ``airflow dags test`` in
.venv-airflow: one task per component, every task succeeds, a version is pushed, MLMD records the run."""
from __future__ import annotations

import subprocess

import pytest
from airflow_env import Workspace, make_workspace

from pipeline.config import load_config
from pipeline.dag import create_pipeline

pytestmark = pytest.mark.e2e

DAG_ID = "breast-cancer"


@pytest.fixture(scope="module")
def dag_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, subprocess.CompletedProcess]:
    workspace = make_workspace(tmp_path_factory.mktemp("airflow_pipeline"))
    workspace.airflow("db", "migrate")
    return workspace, workspace.airflow("dags", "test", DAG_ID, check=False, timeout=1200)


def test_every_component_is_a_task_and_every_task_succeeds(dag_run) -> None:
    workspace, result = dag_run
    config = load_config(workspace.config_path, base=workspace.root)
    components = {component.id for component in create_pipeline(config).components}
    states = workspace.task_states(DAG_ID)
    assert set(states) == components
    failed = {task: state for task, state in states.items() if state != "success"}
    assert not failed, f"tasks not successful: {failed}\n{(result.stdout + result.stderr)[-3000:]}"


def test_mlmd_records_each_component_of_the_airflow_run(dag_run) -> None:
    """TFX's Airflow launcher records an execution per component with the Airflow run id."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    workspace, _ = dag_run
    config = load_config(workspace.config_path, base=workspace.root)
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(config.pipeline.metadata_path)
    executions = metadata_store.MetadataStore(connection).get_executions()
    states = {e.properties["component_id"].string_value: e.properties["state"].string_value for e in executions}
    run_ids = {e.properties["run_id"].string_value for e in executions}
    assert len(run_ids) == 1 and next(iter(run_ids)).startswith("manual__")
    components = {component.id for component in create_pipeline(config).components}
    assert set(states) == components
    assert set(states.values()) <= {"complete", "cached"}, states


def test_the_run_pushed_a_blessed_version(dag_run) -> None:
    workspace, _ = dag_run
    config = load_config(workspace.config_path, base=workspace.root)
    base = config.serving.base_path
    pushed = [p for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []
    assert len(pushed) == 1 and (pushed[0] / "saved_model.pb").is_file(), \
        f"no version under {base}; blessings: {sorted(p.name for p in config.pipeline.root.glob('*/blessing/*/*'))}"
