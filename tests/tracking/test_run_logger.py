"""One MLflow run per run key, with its params, per-epoch curves and artifacts; registration once."""
from __future__ import annotations

import json
from pathlib import Path

from tests.tracking.conftest import make_record, pushed_version
from tracking.registry import CHALLENGER, SERVING_VERSION_TAG, aliases_of
from tracking.run_logger import log_pipeline_run
from tracking.run_record import Registration, flatten, metric_name


def test_a_record_is_logged_once_and_found_again(client, experiment) -> None:
    first = log_pipeline_run(client, experiment, make_record("key-a"))
    again = log_pipeline_run(client, experiment, make_record("key-a"))
    assert not first.reused and again.reused and again.run_id == first.run_id
    assert len(client.search_runs([experiment])) == 1
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["config.training.seed"] == "42"
    assert run.data.metrics["eval.auc"] == 0.97 and run.data.tags["blessed"] == "yes"
    history = client.get_metric_history(first.run_id, "train.loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.7), (1, 0.4)]
    artifacts = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"training_curves.png", "evaluation"} <= artifacts
    local = client.download_artifacts(first.run_id, "evaluation/metrics.json")
    assert json.loads(Path(local).read_text()) == {"auc": 0.97}


def test_a_different_key_is_a_different_run(client, experiment) -> None:
    one = log_pipeline_run(client, experiment, make_record("key-b"))
    two = log_pipeline_run(client, experiment, make_record("key-c"))
    assert one.run_id != two.run_id


def test_a_pushed_version_is_registered_once_as_challenger(client, experiment, model_name, tmp_path) -> None:
    registration = Registration(model_name, "1700000001", pushed_version(tmp_path, "1700000001"))
    logged = log_pipeline_run(client, experiment, make_record("key-d", registration))
    again = log_pipeline_run(client, experiment, make_record("key-d", registration))
    assert logged.model_version == again.model_version == "1"
    versions = client.search_model_versions(f"name = '{model_name}'")
    assert len(versions) == 1 and versions[0].tags[SERVING_VERSION_TAG] == "1700000001"
    assert versions[0].run_id == logged.run_id
    assert aliases_of(client.get_registered_model(model_name)) == {CHALLENGER: "1"}
    source = Path(client.download_artifacts(logged.run_id, "serving_models/1700000001"))
    assert (source / "saved_model.pb").read_bytes() == b"graph 1700000001"


def test_config_flattens_to_dotted_params() -> None:
    flat = flatten({"training": {"seed": 42, "dp": {"enabled": False}}, "model": {"hidden_units": [32, 16]},
                    "privacy": None, "evaluation": {"slice_features": []}})
    assert flat == {"training.seed": "42", "training.dp.enabled": "false", "model.hidden_units": "[32, 16]",
                    "privacy": "null", "evaluation.slice_features": "[]"}
    assert metric_name("eval", "slice.card_type=debit", "auc") == "eval.slice.card_type_debit.auc"
