"""The pipelines as Airflow DAGs under ``airflow dags test`` in .venv-airflow, sharing one Airflow home and
database: the breast-cancer DAG runs every component to a pushed version, in the MLMD layout ``esteira run``
writes (the run report and the LGPD report read it), with the DVC version of its data recorded; the fraud
DAG's run for a day reads the span dated that day, not the latest one."""
from __future__ import annotations

import re
import subprocess
from datetime import date

import pytest
from airflow_env import Workspace, dvc, make_fraud_config, make_workspace

from evidence import governance, lineage
from pipeline.config import ConfigError, UseCaseConfig, load_config
from pipeline.dag import create_pipeline
from pipeline.report import load_report
from privacy.data_version import read_data_version
from tracking.store import LOCAL_FOLDER, connect, local_target

pytestmark = pytest.mark.e2e

DAG_ID = "breast-cancer"
LOGICAL_DATE = "2026-12-01"
RUN_ID = f"manual__{LOGICAL_DATE}T00:00:00+00:00"  # what `airflow dags test DAG <date>` names its run
FRAUD_DAY, FRAUD_SPAN, FRAUD_DAYS = "2024-01-05", 5, 6  # the fraud data's span 1 is 2024-01-01


@pytest.fixture(scope="module")
def dag_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, subprocess.CompletedProcess]:
    """The breast-cancer data under DVC, then the DAG run for LOGICAL_DATE."""
    root = tmp_path_factory.mktemp("airflow_pipeline")
    workspace = make_workspace(root, extra_configs=[make_fraud_config(root, FRAUD_DAYS)])
    dvc(root, "init", "--no-scm", "-q")
    dvc(root, "add", "-q", "data/breast_cancer")
    workspace.airflow("db", "migrate")
    return workspace, workspace.airflow("dags", "test", DAG_ID, LOGICAL_DATE, check=False, timeout=1200)


def breast_cancer(workspace: Workspace) -> UseCaseConfig:
    return load_config(workspace.config_path, base=workspace.root)


def test_every_component_is_a_task_and_every_task_succeeds(dag_run) -> None:
    workspace, result = dag_run
    components = {component.id for component in create_pipeline(breast_cancer(workspace)).components}
    states = workspace.task_states(DAG_ID)
    assert set(states) == components
    failed = {task: state for task, state in states.items() if state != "success"}
    assert not failed, f"tasks not successful: {failed}\n{(result.stdout + result.stderr)[-3000:]}"


def test_the_run_report_reads_the_airflow_run_as_a_local_one(dag_run) -> None:
    """MLMD holds the run as `esteira run` writes it: one pipeline_run context named by the Airflow run id,
    an execution per component in it, each complete; `esteira report` (load_report) reads it."""
    workspace, _ = dag_run
    config = breast_cancer(workspace)
    report = load_report(config.pipeline.metadata_path, config.pipeline.name)
    assert report.run_id == RUN_ID
    components = {component.id for component in create_pipeline(config).components}
    assert {execution.node for execution in report.executions} == components
    assert {execution.state for execution in report.executions} <= {"COMPLETE", "CACHED"}, report.executions
    assert not report.failed and report.blessed is True
    assert report.pushed is True and report.version.isdigit()


def test_the_run_pushed_a_blessed_version(dag_run) -> None:
    workspace, _ = dag_run
    config = breast_cancer(workspace)
    base = config.serving.base_path
    pushed = [p for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []
    assert len(pushed) == 1 and (pushed[0] / "saved_model.pb").is_file(), \
        f"no version under {base}; blessings: {sorted(p.name for p in config.pipeline.root.glob('*/blessing/*/*'))}"


def test_the_model_version_names_its_dvc_data_version(dag_run) -> None:
    """CsvExampleGen records the DVC hash; the LGPD report (`esteira report lgpd`) and the MLflow run name it."""
    workspace, _ = dag_run
    config = breast_cancer(workspace)
    recorded = read_data_version(config.data.source)
    assert recorded is not None and recorded.matches
    store = lineage.open_store(config.pipeline.metadata_path)
    version = load_report(config.pipeline.metadata_path, config.pipeline.name).version
    report = governance.compliance_report(store, governance.find_pushed(store, version), config.serving.model_name,
                                          None, [])
    assert report.data["dvc"] == {"md5": recorded.recorded_md5, "path": str(config.data.source.resolve()),
                                  "file": recorded.dvc_file, "matches_working_copy": True}
    client = connect(local_target(config.pipeline.root / LOCAL_FOLDER))
    [registered] = client.search_model_versions(f"name = '{config.serving.model_name}'")
    assert client.get_run(registered.run_id).data.params["data.dvc_md5"] == recorded.recorded_md5


def test_the_fraud_run_for_a_day_reads_that_days_span(dag_run) -> None:
    """`airflow dags test fraud <day>` with every task but ExampleGen marked done: the Examples are the
    day's span (5 of 6), the eval window ends there; a day without a span is refused, naming it."""
    workspace, _ = dag_run
    config = load_config(workspace.extra_configs[0], base=workspace.root)
    example_gen, *others = (component.id for component in create_pipeline(config).components)
    # Airflow matches the pattern with re2 (no lookahead): every task but ExampleGen, by name
    result = workspace.airflow("dags", "test", "fraud", FRAUD_DAY, "--mark-success-pattern",
                               "|".join(map(re.escape, others)), check=False, timeout=900)
    assert workspace.task_states("fraud")[example_gen] == "success", (result.stdout + result.stderr)[-3000:]
    store = lineage.open_store(config.pipeline.metadata_path)
    [execution] = lineage.run_executions(store, f"manual__{FRAUD_DAY}T00:00:00+00:00")
    [examples] = lineage.output_artifacts(store, execution.execution_id, "examples")
    assert examples.custom_properties["span"].int_value == FRAUD_SPAN
    assert examples.custom_properties["eval_last_span"].int_value == FRAUD_SPAN
    from orchestration.daily_span import span_of_day

    with pytest.raises(ConfigError, match=r"2024-02-01 reads span 32 .*not under .*spans 1\.\.6.*write that day"):
        span_of_day(config, date(2024, 2, 1))
