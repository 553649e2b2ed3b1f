"""The continuous-training steps against a real Prometheus (started here, canary alert rules under the
canary alerts' names), a real MLflow registry (sqlite) and a models.config: a quiet canary is promoted
(champion alias, stable label), a canary whose alert fires is rolled back, each decision is audited with
Prometheus' queries and values, nothing moves without Prometheus, and new data or an alert triggers a run."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from observability.stack import free_port, wait_until
from orchestration import continuous_training as ct
from pipeline.config import load_config
from privacy.audit import read_records
from serving.config import read_model_config
from tracking.registry import CHAMPION, aliases_of, apply_move, plan_promote
from tracking.run_logger import log_pipeline_run
from tracking.run_record import PipelineRunRecord, Registration
from tracking.store import LOCAL_FOLDER, connect, experiment_id, local_target

REPO = Path(__file__).resolve().parents[2]
QUIET, WORSE = "quiet_model", "worse_model"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory):
    """Both canary rules; EsteiraCanaryErrorsWorse fires for WORSE only, EsteiraCanaryLatencyWorse for no model."""
    root = tmp_path_factory.mktemp("prometheus")
    rules = [{"alert": "EsteiraCanaryErrorsWorse", "expr": f'label_replace(vector(0.2), "model", "{WORSE}", "", "")'
              ' > 0.05'},
             {"alert": "EsteiraCanaryLatencyWorse", "expr": 'label_replace(vector(1), "model", "none", "", "") > 2'}]
    (root / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "canary", "interval": "1s", "rules": rules}]}))
    (root / "prometheus.yml").write_text(yaml.safe_dump({"global": {"evaluation_interval": "1s"},
                                                          "rule_files": ["rules.yml"]}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "prometheus.log"
    with log.open("w") as out:
        process = subprocess.Popen(["prometheus", f"--config.file={root / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        def firing() -> bool:
            return any(a["state"] == "firing" for a in httpx.get(f"{url}/api/v1/alerts").json()["data"]["alerts"])

        wait_until(firing, 30, "the canary alert firing", process, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def build_use_case(root: Path, model: str) -> None:
    """A use case named ``model`` with two registered serving versions: 1 champion (stable), 2 the challenger."""
    data = yaml.safe_load((REPO / "configs" / "breast_cancer.yaml").read_text())
    data["serving"]["model_name"] = model
    data["optimization"] = None
    (root / "data" / "breast_cancer").mkdir(parents=True)
    (root / "data" / "breast_cancer" / "part.csv").write_text("malignant,mean_radius\n1,2.0\n")
    (root / "use_case.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(root / "use_case.yaml", base=root)
    client = connect(local_target(config.pipeline.root / LOCAL_FOLDER))
    experiment = experiment_id(client, local_target(config.pipeline.root / LOCAL_FOLDER), model)
    for serving in ("1", "2"):
        folder = config.serving.base_path / serving
        (folder / "variables").mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"graph " + serving.encode())
        log_pipeline_run(client, experiment, PipelineRunRecord(
            run_key=f"{model}-{serving}", run_name=serving, params={}, metrics={"eval.auc": 0.97},
            metric_history={}, tags={}, json_artifacts={}, registration=Registration(model, serving, folder)))
    apply_move(client, plan_promote(client, model, "1"))


@pytest.fixture(scope="module")
def use_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each model's use case and registry, built once (an MLflow store takes seconds to create); every test
    works on its own copy, so no test sees another's promotion."""
    folders = {model: tmp_path_factory.mktemp(model) for model in (QUIET, WORSE)}
    for model, folder in folders.items():
        build_use_case(folder, model)
    return folders


def make_settings(root: Path, model: str, prometheus_url: str, use_cases: dict[str, Path]) -> ct.Settings:
    """A copy of ``model``'s use case under root, its models.config serving version 1 as stable."""
    shutil.copytree(use_cases[model], root, dirs_exist_ok=True)
    settings = ct.Settings(config_path=root / "use_case.yaml", home=root, model_config_file=root / "models.config",
                           prometheus_url=prometheus_url, audit_log=root / "audit.jsonl", soak_seconds=2,
                           soak_every=0.5)
    settings.model_config_file.write_text(
        f'model_config_list {{ config {{ name: "{model}" base_path: "{settings.config().serving.base_path}" '
        'model_platform: "tensorflow" model_version_policy { specific { versions: 1 } } '
        'version_labels { key: "stable" value: 1 } } }\n')
    return settings


def labels(settings: ct.Settings) -> dict[str, int]:
    return dict(read_model_config(settings.model_config_file).model_config_list.config[0].version_labels)


def champion(settings: ct.Settings) -> str:
    config = settings.config()
    client = connect(local_target(config.pipeline.root / LOCAL_FOLDER))
    return aliases_of(client.get_registered_model(config.serving.model_name))[CHAMPION]


def run_steps(settings: ct.Settings, version: int) -> tuple[str, dict]:
    """start_canary → soak → decide → promote | rollback → audit_decision, as the DAG's tasks call them."""
    ct.start_canary(settings, version)
    assert labels(settings) == {"stable": 1, "canary": version}
    firing = ct.soak(settings)
    evidence = ct.canary_evidence(settings.prometheus_url, settings.config().serving.model_name)
    decision = ct.decide(firing)
    action = ct.promote(settings, version) if decision == ct.PROMOTE else ct.rollback(settings)
    ct.audit_decision(settings, trigger="new data", version=version, decision=decision, firing=firing,
                      evidence=evidence, action=action)
    decisions = [r for r in read_records(settings.audit_log) if r["event"] == "continuous_training.decision"]
    assert len(decisions) == 1
    return decision, decisions[0]


def test_a_quiet_canary_is_promoted_and_the_decision_audited(prometheus, use_cases, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, QUIET, prometheus, use_cases)
    decision, record = run_steps(settings, 2)
    assert decision == ct.PROMOTE
    assert labels(settings) == {"stable": 2, "canary": 2}
    assert champion(settings) == "2"  # the registered version of serving version 2
    assert record["firing_canary_alerts"] == [] and record["version"] == 2
    assert {e["alert"] for e in record["evidence"]} == {"EsteiraCanaryErrorsWorse", "EsteiraCanaryLatencyWorse"}
    assert all(e["query"] and e["values"] == [] for e in record["evidence"])  # no series for this model
    events = [r["event"] for r in read_records(settings.audit_log)]
    assert events == ["registry.promote", "continuous_training.decision"]


def test_a_canary_whose_alert_fires_is_rolled_back_with_the_evidence(prometheus, use_cases, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, WORSE, prometheus, use_cases)
    decision, record = run_steps(settings, 2)
    assert decision == ct.ROLLBACK
    assert labels(settings) == {"stable": 1, "canary": 1}
    assert champion(settings) == "1"
    assert record["firing_canary_alerts"] == ["EsteiraCanaryErrorsWorse"]
    errors = next(e for e in record["evidence"] if e["alert"] == "EsteiraCanaryErrorsWorse")
    assert errors["state"] == "firing" and [v["value"] for v in errors["values"]] == ["0.2"]
    assert "vector(0.2)" in errors["query"]


def test_nothing_is_promoted_when_prometheus_cannot_be_reached(prometheus, use_cases, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, QUIET, prometheus, use_cases)
    unreachable = ct.Settings(**{**settings.__dict__, "prometheus_url": "http://127.0.0.1:9"})
    ct.start_canary(unreachable, 2)
    with pytest.raises(ct.ContinuousTrainingError, match=r"127\.0\.0\.1:9.*nothing is promoted"):
        ct.soak(unreachable)
    with pytest.raises(ct.ContinuousTrainingError, match="nothing is promoted"):
        ct.canary_evidence(unreachable.prometheus_url, QUIET)
    assert labels(settings) == {"stable": 1, "canary": 2} and champion(settings) == "1"


def test_new_data_or_an_alert_triggers_and_trained_data_does_not(prometheus, use_cases, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, QUIET, prometheus, use_cases)
    config = settings.config()
    assert ct.trigger_reason(settings, None).startswith("new data: sha256:")
    (config.pipeline.root.parent / ct.STATE_FILE).write_text(f'{{"data_version": "{ct.data_version(config)}"}}')
    assert ct.trigger_reason(settings, {}) is None
    alert = {"labels": {"alertname": "EsteiraInputDrift", "model": QUIET}}
    assert ct.trigger_reason(settings, {"alerts": [alert]}) == "alert: EsteiraInputDrift"
    (config.data.source / "part-2.csv").write_text("malignant,mean_radius\n0,1.0\n")
    assert ct.trigger_reason(settings, None).startswith("new data:")
