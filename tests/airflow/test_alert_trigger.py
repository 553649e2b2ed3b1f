"""Alertmanager's webhook starts a continuous-training run: a real Airflow (orchestration.airflow_local, as
``make airflow`` starts it), the alert trigger, and a real Alertmanager with configs/monitoring/alertmanager.yml's
route and receiver, all on 127.0.0.1; a drift alert posted to Alertmanager becomes a DAG run whose conf holds it."""
from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from observability.stack import free_port, stop_processes, wait_until
from orchestration.airflow_local import AirflowSettings, start_airflow
from orchestration.continuous_dag import DAG_ID
from orchestration.pipeline_dag import CONFIGS_ENV

REPO = Path(__file__).resolve().parents[2]


def _process(argv: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("alert_trigger")
    settings = AirflowSettings(root / "airflow", port=free_port(), dag_environment={CONFIGS_ENV: ""})
    credentials = start_airflow(settings)
    processes: list[subprocess.Popen] = []
    try:
        auth = (credentials["username"], credentials["password"])
        wait_until(lambda: httpx.get(f"{settings.url}/api/v1/dags/{DAG_ID}", auth=auth).status_code == 200,
                   240, f"Airflow's scheduler parsing {DAG_ID}")
        token = secrets.token_hex(24)
        (root / "tokens").write_text(f"alertmanager:{token}\n")
        (root / "alertmanager.token").write_text(token)
        trigger_port = free_port()
        processes.append(_process([sys.executable, "-m", "cli", "alert-trigger", "--port", str(trigger_port),
                                   "--airflow_credentials", str(settings.state_dir / "admin.json"),
                                   "--auth_token_file", str(root / "tokens")], root / "trigger.log"))
        trigger = f"http://127.0.0.1:{trigger_port}/alertmanager"
        wait_until(lambda: httpx.post(trigger, json={}).status_code == 401, 60, "the alert trigger",
                   processes[-1], root / "trigger.log")
        config = yaml.safe_load((REPO / "configs" / "monitoring" / "alertmanager.yml").read_text())
        config["route"]["group_wait"] = "1s"
        receiver = next(r for r in config["receivers"] if r["name"] == "continuous-training")
        receiver["webhook_configs"][0]["url"] = trigger
        receiver["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"] = \
            str(root / "alertmanager.token")
        (root / "alertmanager.yml").write_text(yaml.safe_dump(config))
        am_port = free_port()
        processes.append(_process(["prometheus-alertmanager", f"--config.file={root / 'alertmanager.yml'}",
                                   f"--storage.path={root / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                                   "--cluster.listen-address="], root / "alertmanager.log"))
        alertmanager = f"http://127.0.0.1:{am_port}"
        wait_until(lambda: httpx.get(f"{alertmanager}/-/ready").status_code == 200, 30, "Alertmanager",
                   processes[-1], root / "alertmanager.log")
        yield {"airflow": settings.url, "auth": auth, "trigger": trigger, "token": token,
               "alertmanager": alertmanager, "state_dir": settings.state_dir}
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)
        stop_processes(settings.state_dir)


def dag_runs(stack: dict) -> list[dict]:
    answer = httpx.get(f"{stack['airflow']}/api/v1/dags/{DAG_ID}/dagRuns", auth=stack["auth"], timeout=10)
    return answer.json()["dag_runs"]


def test_a_drift_alert_in_alertmanager_becomes_a_dag_run_with_the_alert(stack: dict) -> None:
    alert = {"labels": {"alertname": "EsteiraInputDrift", "model": "breast_cancer", "feature": "mean_radius",
                        "severity": "warning"}}
    assert httpx.post(f"{stack['alertmanager']}/api/v2/alerts", json=[alert]).status_code == 200
    deadline = time.monotonic() + 60
    while not dag_runs(stack) and time.monotonic() < deadline:
        time.sleep(1)
    runs = dag_runs(stack)
    assert len(runs) == 1, runs
    conf = runs[0]["conf"]
    assert conf["trigger"] == "alertmanager"
    assert [a["labels"]["alertname"] for a in conf["alerts"]] == ["EsteiraInputDrift"]
    assert conf["alerts"][0]["labels"]["feature"] == "mean_radius"


def test_the_trigger_refuses_a_missing_token_and_ignores_other_alerts(stack: dict) -> None:
    payload = {"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "EsteiraNoTraffic"}}]}
    assert httpx.post(stack["trigger"], json=payload).status_code == 401
    answer = httpx.post(stack["trigger"], json=payload, headers={"Authorization": f"Bearer {stack['token']}"})
    assert answer.status_code == 200 and answer.json()["triggered"] is False
    bad = httpx.post(stack["trigger"], json={"alerts": "x"}, headers={"Authorization": f"Bearer {stack['token']}"})
    assert bad.status_code == 400 and "Alertmanager" in json.loads(bad.text)["error"]


def test_airflow_down_stops_exactly_what_up_started(stack: dict) -> None:
    """Last in this module: `make airflow-down`'s stop, after Airflow's processes retitled themselves."""
    pids = [json.loads(path.read_text())["pid"] for path in sorted((stack["state_dir"] / "pids").glob("*.pid"))]
    assert stop_processes(stack["state_dir"]) == ["airflow-scheduler", "airflow-webserver"]
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
