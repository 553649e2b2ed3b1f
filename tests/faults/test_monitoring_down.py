"""Prometheus and Alertmanager down under a running server (real processes on 127.0.0.1, SIGKILLed): the server
keeps answering (it pushes nothing to them; it is scraped), Prometheus keeps scraping and evaluating rules while
Alertmanager is gone and delivers the firing alert once it is back, and after Prometheus restarts its first
scrapes carry the requests answered while it was down (the server's counters never reset)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from faults_helpers import MODEL, PREDICT_BODY
from serving_helpers import start_server

from observability.stack import wait_until
from serving.demo_model import export_demo_model
from serving.server import RunningServer, pick_free_port

METRICS = "/monitoring/prometheus/metrics"
ALERT = "FaultSuiteAlwaysFiring"


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: apt-get install prometheus prometheus-alertmanager (.ci/run installs them)")
    return found


def _wait(check: Callable[[], bool], what: str) -> None:
    wait_until(check, 60, what)


class Daemon:
    """One monitoring process, restartable with the same arguments (same port, same storage)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv, self.log = argv, log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("monitoring_down")
    export_demo_model(root / "models" / MODEL, 1)
    server = start_server(root, f"--model_base_path={root / 'models' / MODEL}", f"--model_name={MODEL}",
                          "--file_system_poll_wait_seconds=0")
    am_port, prom_port = pick_free_port(), pick_free_port()
    (root / "am.yml").write_text(yaml.safe_dump({"route": {"receiver": "nobody", "group_wait": "1s"},
                                                 "receivers": [{"name": "nobody"}]}))
    (root / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "faults", "rules": [
        {"alert": ALERT, "expr": "vector(1)", "labels": {"severity": "info"}}]}]}))
    (root / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(root / "rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "esteira", "metrics_path": METRICS,
                            "static_configs": [{"targets": [f"127.0.0.1:{server.server.rest_port}"]}]}]}))
    alertmanager = Daemon([_binary("prometheus-alertmanager"), f"--config.file={root / 'am.yml'}",
                           f"--storage.path={root / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
                           "--cluster.listen-address="], root / "alertmanager.log")
    prometheus = Daemon([_binary("prometheus"), f"--config.file={root / 'prometheus.yml'}",
                         f"--storage.tsdb.path={root / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                         "--rules.alert.resend-delay=1s"], root / "prometheus.log")
    alertmanager.start()
    prometheus.start()
    try:
        yield {"server": server, "alertmanager": alertmanager, "prometheus": prometheus,
               "am_url": f"http://127.0.0.1:{am_port}", "prom_url": f"http://127.0.0.1:{prom_port}"}
    finally:
        prometheus.kill()
        alertmanager.kill()
        server.stop()


def _query(prom_url: str, expr: str) -> float | None:
    result = httpx.get(f"{prom_url}/api/v1/query", params={"query": expr}, timeout=5).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _answer(server: RunningServer, count: int) -> list[int]:
    with httpx.Client(timeout=10) as client:
        return [client.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json=PREDICT_BODY).status_code
                for _ in range(count)]


def _requests_seen(prom_url: str) -> float:
    return _query(prom_url, f'sum(:tensorflow:serving:request_count{{model_name="{MODEL}"}})') or 0.0


def test_alertmanager_down_then_back_and_prometheus_down_then_back(stack: dict) -> None:
    server, prom_url, am_url = stack["server"], stack["prom_url"], stack["am_url"]
    _wait(lambda: _query(prom_url, 'up{job="esteira"}') == 1.0, "Prometheus did not scrape the server")

    stack["alertmanager"].kill()
    assert _answer(server, 40) == [200] * 40
    _wait(lambda: any(a["labels"]["alertname"] == ALERT and a["state"] == "firing"
                      for a in httpx.get(f"{prom_url}/api/v1/alerts").json()["data"]["alerts"]),
          "Prometheus stopped evaluating its rules while Alertmanager was down")
    _wait(lambda: _requests_seen(prom_url) >= 40, "Prometheus stopped scraping while Alertmanager was down")
    stack["alertmanager"].start()
    _wait(lambda: any(a["labels"]["alertname"] == ALERT for a in httpx.get(f"{am_url}/api/v2/alerts").json()),
          "the firing alert did not reach Alertmanager once it was back")

    stack["prometheus"].kill()
    assert _answer(server, 60) == [200] * 60  # nobody scrapes: the server does not notice
    stack["prometheus"].start()
    _wait(lambda: _requests_seen(prom_url) >= 100,
          "after its restart Prometheus did not see the requests answered while it was down")
