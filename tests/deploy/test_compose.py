"""docker/compose.yaml: the whole local stack validated; the model server started from it and answering.

No registry is reachable here, so of the stack's images only Esteira's serving image exists: the
other services are checked as podman-compose would run them (``--dry-run``) and by their configs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from deploy.podman import Podman
from serving.server import pick_free_port

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
SERVICES = {"model-server", "prometheus", "alertmanager", "grafana", "mlflow"}


def compose(podman: Podman, project: str, *args: str, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which("podman-compose") is None:
        pytest.fail("podman-compose is not installed: `apt-get install podman-compose` (as .ci/run does)")
    result = subprocess.run(["podman-compose", "-p", project, "-f", str(COMPOSE), *args],
                            env={**podman.env, **(env or {})}, capture_output=True, text=True, cwd=COMPOSE.parent)
    if check and result.returncode != 0:
        pytest.fail(f"podman-compose {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def test_every_service_resolves_to_a_loopback_only_podman_run_with_existing_mounts(podman: Podman) -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    assert set(spec["services"]) == SERVICES
    project = f"esteira-check-{os.getpid()}"
    volumes = [f"{project}_{name}" for name in spec.get("volumes", {})]  # --dry-run still creates these
    try:
        dry = compose(podman, project, "--dry-run", "up", "-d").stdout
    finally:
        for volume in volumes:
            podman.run("volume", "rm", "--force", volume, check=False)
    assert not [v for v in volumes if podman.run("volume", "exists", v, check=False).returncode == 0]
    runs = [line for line in dry.splitlines() if line.startswith("podman run ")]
    assert len(runs) == len(SERVICES), dry
    for line in runs:
        words = line.split()
        ports = [words[i + 1] for i, word in enumerate(words) if word == "-p"]
        assert ports and all(port.startswith("127.0.0.1:") for port in ports), line
        for i, word in enumerate(words):
            if word == "-v" and words[i + 1].startswith("/"):
                source = Path(words[i + 1].split(":")[0])
                assert source.exists() or "outputs" in source.parts, f"missing mount source {source}"


def test_prometheus_scrapes_the_model_server_and_loads_the_alert_rules(tmp_path: Path) -> None:
    """promtool checks the compose Prometheus config with the rules laid out as the mounts lay them."""
    config = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    spec = yaml.safe_load(COMPOSE.read_text())["services"]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "esteira-serving")
    assert job["static_configs"][0]["targets"] == ["model-server:8501"]
    assert job["metrics_path"] in (ROOT / "configs" / "serving" / "monitoring.config").read_text()
    assert any(port.endswith(":8501") for port in spec["model-server"]["ports"])
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    shutil.copy(ROOT / "docker" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(ROOT / "configs" / "monitoring" / "rules", tmp_path / "rules")
    checked = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 2 rule files found" in checked.stdout


def test_grafana_mounts_the_provisioning_where_it_points() -> None:
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    provider = yaml.safe_load((ROOT / "configs/monitoring/grafana/provisioning/dashboards/esteira.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    targets = {volume.split(":")[1]: volume.split(":")[0] for volume in grafana["volumes"]}
    assert (COMPOSE.parent / targets[dashboards_path]).resolve() == ROOT / "configs/monitoring/grafana/dashboards"
    assert grafana["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"


@pytest.fixture
def compose_model_server(podman: Podman, serving_image: str, pushed_model: Path,
                         wait_available: Callable[[str, str, str], None]) -> Iterator[str]:
    """`podman-compose up -d model-server` on free loopback ports; `down` afterwards, checked."""
    project = f"esteira-test-{os.getpid()}"
    rest_port, grpc_port = pick_free_port(), pick_free_port()
    env = {"ESTEIRA_SERVING_IMAGE": serving_image, "MODEL_NAME": pushed_model.name, "MODEL_DIR": str(pushed_model),
           "ESTEIRA_REST_PORT": str(rest_port), "ESTEIRA_GRPC_PORT": str(grpc_port)}
    compose(podman, project, "up", "-d", "model-server", env=env)
    containers = podman.run("ps", "--all", "--quiet", "--filter",
                            f"label=io.podman.compose.project={project}").stdout.split()
    try:
        assert len(containers) == 1, f"expected the model server alone, got {containers}"
        wait_available(f"http://127.0.0.1:{rest_port}", pushed_model.name, containers[0])
        yield f"http://127.0.0.1:{rest_port}"
    finally:
        for container in containers:  # with its anonymous /models volume, which podman-compose down leaves
            podman.remove_container(container)
        compose(podman, project, "down", "--volumes", env=env, check=False)
        left = podman.run("ps", "--all", "--quiet", "--filter", f"label=io.podman.compose.project={project}").stdout
        assert not left.strip(), f"podman-compose down left containers: {left}"
        volumes = podman.run("volume", "ls", "--quiet").stdout.split()
        assert not [v for v in volumes if v.startswith(f"{project}_")], f"podman-compose down left volumes: {volumes}"


def test_compose_starts_the_model_server_which_serves_and_exports_metrics(compose_model_server: str) -> None:
    """The fixture waited for the model to be AVAILABLE; Prometheus' scrape path answers TF Serving's metrics."""
    metrics = httpx.get(f"{compose_model_server}/monitoring/prometheus/metrics", timeout=10)
    assert metrics.status_code == 200 and ":tensorflow:serving:" in metrics.text
