"""MLflow killed in the middle of a run's logging (a real ``mlflow server``, SIGKILLed after the run's params
went in): the logging fails with the tracking error the pipeline reports, and once the server is back a rerun
finishes that same run, so the experiment holds one run with every param, metric point, artifact and one
registered version, none twice."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults_helpers import MlflowServer

from tests.tracking.conftest import make_record, pushed_version
from tracking.errors import TrackingError
from tracking.run_logger import RUN_KEY_TAG, log_pipeline_run
from tracking.run_record import Registration
from tracking.store import TrackingTarget, connect, experiment_id

KEY = "run-cut-short"


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    saved = {name: os.environ.get(name) for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10")  # a dead server fails now
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_state"))
    server.start()
    try:
        yield server
    finally:
        server.kill()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_a_rerun_after_mlflow_died_mid_logging_completes_the_same_run_without_duplicates(
        mlflow: MlflowServer, tmp_path: Path) -> None:
    target = TrackingTarget(uri=mlflow.uri)
    client = connect(target)
    experiment = experiment_id(client, target, "faults")
    record = make_record(KEY, Registration("fault_model", "1700000042", pushed_version(tmp_path, "1700000042")))

    original = client.log_batch
    calls = []

    def log_batch_then_die(*args, **kwargs):  # type: ignore[no-untyped-def]
        original(*args, **kwargs)
        calls.append(kwargs)
        if len(calls) == 1:
            mlflow.kill()  # the params are in; the metrics, artifacts and registration are not

    client.log_batch = log_batch_then_die  # type: ignore[method-assign]
    with pytest.raises(TrackingError, match="MLflow refused the run"):
        log_pipeline_run(client, experiment, record)

    mlflow.start()  # same store, same URI
    client = connect(target)
    [cut] = client.search_runs([experiment], filter_string=f"tags.`{RUN_KEY_TAG}` = '{KEY}'")
    assert cut.info.status == "RUNNING" and "eval.auc" not in cut.data.metrics  # what the kill left

    finished = log_pipeline_run(client, experiment, record)
    assert finished.run_id == cut.info.run_id and not finished.reused
    [run] = client.search_runs([experiment], filter_string=f"tags.`{RUN_KEY_TAG}` = '{KEY}'")
    assert run.info.status == "FINISHED"
    assert run.data.params == {**record.params}
    assert run.data.metrics == pytest.approx(record.metrics | {k: v[-1][1] for k, v in record.metric_history.items()})
    for name, points in record.metric_history.items():
        assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)] == points
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"evaluation", "training_curves.png"}
    assert [v.version for v in client.search_model_versions("name = 'fault_model'")] == ["1"]

    again = log_pipeline_run(client, experiment, record)  # and a rerun after that adds nothing
    assert again.reused and again.run_id == run.info.run_id and again.model_version == "1"
    assert len(client.search_runs([experiment])) == 1
